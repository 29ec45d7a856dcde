output "url" {
  description = "URL Coffer is served at (COFFER_BASE_URL)."
  value       = "https://${var.domain_name}"
}

output "load_balancer_dns_name" {
  description = "DNS name of the load balancer (point domain_name at it when Route 53 is not used)."
  value       = module.edge.dns_name
}

output "coffer_kms_key_arn" {
  description = "Coffer's key-encryption key."
  value       = module.kms.coffer_key_arn
}

output "task_role_arn" {
  description = "The only principal that may decrypt with Coffer's key."
  value       = module.service.task_role_arn
}

output "database_address" {
  description = "Host name of the RDS instance."
  value       = module.database.address
}

output "database_master_user_secret_arn" {
  description = "Secret holding the RDS master password (for creating Coffer's database user once)."
  value       = module.database.master_user_secret_arn
}

output "database_url_secret_arn" {
  description = "Put COFFER_DATABASE_URL here."
  value       = module.service.database_url_secret_arn
}

output "bootstrap_token_secret_arn" {
  description = "Put COFFER_BOOTSTRAP_TOKEN here."
  value       = module.service.bootstrap_token_secret_arn
}

output "ecs_cluster_name" {
  description = "ECS cluster name."
  value       = module.service.cluster_name
}

output "ecs_service_name" {
  description = "ECS service name."
  value       = module.service.service_name
}

output "access_log_bucket" {
  description = "Bucket with the load balancer access logs."
  value       = module.edge.access_log_bucket
}
