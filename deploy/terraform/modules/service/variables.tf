variable "name" {
  description = "Name prefix for the cluster, service, roles and secrets."
  type        = string
}

variable "image" {
  description = "Coffer container image (ideally pinned by digest: registry/repo@sha256:...)."
  type        = string
}

variable "ecr_repository_arns" {
  description = "ECR repositories the execution role may pull from (the repository of image)."
  type        = list(string)
  default     = []
}

variable "desired_count" {
  description = "Number of Coffer tasks; ECS spreads them over the subnets' zones."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_count >= 1
    error_message = "desired_count must be at least 1."
  }
}

variable "cpu" {
  description = "Task CPU units."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Task memory, in MiB."
  type        = number
  default     = 1024
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64, matching the image."
  type        = string
  default     = "X86_64"
}

variable "service_port" {
  description = "Port Coffer listens on."
  type        = number
  default     = 8080
}

variable "private_subnet_ids" {
  description = "Private subnets the tasks run in (no public IPs are assigned)."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the tasks."
  type        = string
}

variable "target_group_arn" {
  description = "Load balancer target group the tasks register in."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of Coffer's key-encryption key (COFFER_KMS_KEY_ID)."
  type        = string
}

variable "infra_kms_key_arn" {
  description = "ARN of the key that encrypts the log group and the Secrets Manager secrets."
  type        = string
}

variable "tenant_kms_key_arns" {
  description = "Tenant-owned KMS keys (bring your own key) the task role may use; the tenants' key policies must grant the task role too."
  type        = list(string)
  default     = []
}

variable "base_url" {
  description = "URL users reach Coffer at (COFFER_BASE_URL), such as https://coffer.example.com."
  type        = string

  validation {
    condition     = startswith(var.base_url, "https://")
    error_message = "base_url must be an https:// URL."
  }
}

variable "trusted_proxy_cidrs" {
  description = "CIDRs of the load balancer's subnets (COFFER_TRUSTED_PROXIES)."
  type        = list(string)
}

variable "bootstrap_email" {
  description = "E-mail of the first owner created with the bootstrap token (COFFER_BOOTSTRAP_EMAIL); null keeps Coffer's default."
  type        = string
  default     = null
}

variable "log_level" {
  description = "COFFER_LOG_LEVEL: debug, info, warn or error."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "Retention of the service log group, in days."
  type        = number
  default     = 90
}

variable "secret_recovery_window_days" {
  description = "Days a deleted Secrets Manager secret can still be restored."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
