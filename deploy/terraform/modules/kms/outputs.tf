output "coffer_key_arn" {
  description = "ARN of Coffer's key-encryption key (COFFER_KMS_KEY_ID)."
  value       = aws_kms_key.coffer.arn
}

output "coffer_key_alias" {
  description = "Alias of Coffer's key-encryption key."
  value       = aws_kms_alias.coffer.name
}

output "infra_key_arn" {
  description = "ARN of the key for RDS, Secrets Manager and CloudWatch Logs."
  value       = aws_kms_key.infra.arn
}
