variable "name" {
  description = "Name prefix for the network resources."
  type        = string
}

variable "cidr_block" {
  description = "CIDR block of the VPC (a /16 leaves room for the subnets below)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Number of availability zones to spread the subnets over."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2
    error_message = "az_count must be at least 2: the load balancer and Multi-AZ RDS need two zones."
  }
}

variable "alb_ingress_cidrs" {
  description = "Client CIDRs allowed to reach the load balancer on 80 (redirect) and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "service_port" {
  description = "Port Coffer listens on in its tasks."
  type        = number
  default     = 8080
}

variable "log_kms_key_arn" {
  description = "KMS key ARN that encrypts the VPC flow log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the VPC flow log group, in days."
  type        = number
  default     = 90
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
