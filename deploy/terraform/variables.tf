variable "name" {
  description = "Name prefix for every resource (short: it ends up in load balancer and target group names)."
  type        = string
  default     = "coffer"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}$", var.name))
    error_message = "name must be 2-19 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy to."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Number of availability zones (at least 2)."
  type        = number
  default     = 2
}

variable "alb_ingress_cidrs" {
  description = "Client CIDRs allowed to reach the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "image" {
  description = "Coffer container image, pinned by digest (123456789012.dkr.ecr.eu-west-1.amazonaws.com/coffer@sha256:...)."
  type        = string
}

variable "ecr_repository_arns" {
  description = "ECR repositories holding the image, which the execution role may pull from."
  type        = list(string)
  default     = []
}

variable "desired_count" {
  description = "Number of Coffer tasks. Use 0 for the first apply, until the two secrets hold values."
  type        = number
  default     = 2
}

variable "task_cpu" {
  description = "Task CPU units."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Task memory, in MiB."
  type        = number
  default     = 1024
}

variable "domain_name" {
  description = "Domain Coffer is served at (coffer.example.com). Also the ACM certificate's name when certificate_arn is null."
  type        = string
}

variable "certificate_arn" {
  description = "ARN of an existing ACM certificate for domain_name; null requests one, validated in route53_zone_id."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of domain_name, for certificate validation and the alias record (optional when certificate_arn is set)."
  type        = string
  default     = null
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m6g.large"
}

variable "db_allocated_storage" {
  description = "Initial database storage, in GiB."
  type        = number
  default     = 50
}

variable "backup_retention_days" {
  description = "Days of automated database backups kept."
  type        = number
  default     = 14
}

variable "log_retention_days" {
  description = "Retention of every CloudWatch log group, in days."
  type        = number
  default     = 90
}

variable "tenant_kms_key_arns" {
  description = "Tenant-owned KMS keys (bring your own key) Coffer may use."
  type        = list(string)
  default     = []
}

variable "bootstrap_email" {
  description = "E-mail of the first owner (COFFER_BOOTSTRAP_EMAIL); null keeps Coffer's default."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
