variable "name" {
  description = "Name prefix; the DB instance identifier is <name>-postgres."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the DB subnet group (two or more zones)."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the database (Postgres from the tasks only)."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer managed key for storage, Performance Insights, the master password secret and the log group."
  type        = string
}

variable "instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.m6g.large"
}

variable "engine_version" {
  description = "Postgres major version (minor upgrades are applied automatically)."
  type        = string
  default     = "16"
}

variable "allocated_storage" {
  description = "Initial storage, in GiB."
  type        = number
  default     = 50
}

variable "max_allocated_storage" {
  description = "Storage autoscaling ceiling, in GiB."
  type        = number
  default     = 500
}

variable "database_name" {
  description = "Name of the database Coffer uses."
  type        = string
  default     = "coffer"
}

variable "master_username" {
  description = "Master user name; its password is generated and kept by RDS in Secrets Manager."
  type        = string
  default     = "coffer_admin"
}

variable "backup_retention_days" {
  description = "Days of automated backups kept (point-in-time recovery window)."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be from 7 to 35."
  }
}

variable "log_retention_days" {
  description = "Retention of the exported Postgres log groups, in days."
  type        = number
  default     = 90
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
