output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.coffer.name
}

output "task_role_arn" {
  description = "ARN of the task role (the only principal that may decrypt with Coffer's key)."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "ARN of the execution role."
  value       = aws_iam_role.execution.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the Coffer containers."
  value       = aws_cloudwatch_log_group.coffer.name
}

output "database_url_secret_arn" {
  description = "Secrets Manager secret to put COFFER_DATABASE_URL in."
  value       = aws_secretsmanager_secret.database_url.arn
}

output "bootstrap_token_secret_arn" {
  description = "Secrets Manager secret to put COFFER_BOOTSTRAP_TOKEN in."
  value       = aws_secretsmanager_secret.bootstrap_token.arn
}
