output "address" {
  description = "Host name of the database (for COFFER_DATABASE_URL)."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the database."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Name of the database."
  value       = aws_db_instance.this.db_name
}

output "instance_identifier" {
  description = "RDS instance identifier."
  value       = aws_db_instance.this.identifier
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret RDS keeps the master password in (for the one-time setup of Coffer's own database user)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}
