variable "name" {
  description = "Name prefix for the keys and their aliases."
  type        = string
}

variable "task_role_arn" {
  description = "ARN of the Coffer ECS task role: the only principal allowed to use Coffer's key, and the only one not denied kms:Decrypt on it."
  type        = string
}

variable "deletion_window_in_days" {
  description = "Waiting period before a scheduled key deletion takes effect."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days must be from 7 to 30."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
