variable "name" {
  description = "Name prefix for the load balancer and its bucket."
  type        = string
}

variable "vpc_id" {
  description = "ID of the VPC."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets for the load balancer (two or more zones)."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the load balancer."
  type        = string
}

variable "certificate_arn" {
  description = "ARN of an existing ACM certificate for the HTTPS listener. When null, a certificate for domain_name is requested and validated in route53_zone_id."
  type        = string
  default     = null
}

variable "domain_name" {
  description = "Domain Coffer is served at; used for the ACM certificate when certificate_arn is null."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone for DNS validation of the requested certificate and the alias record (optional)."
  type        = string
  default     = null
}

variable "service_port" {
  description = "Port Coffer listens on in its tasks."
  type        = number
  default     = 8080
}

variable "health_check_path" {
  description = "Path the target group checks."
  type        = string
  default     = "/readyz"
}

variable "access_log_retention_days" {
  description = "Days load balancer access logs are kept in the bucket."
  type        = number
  default     = 90
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
