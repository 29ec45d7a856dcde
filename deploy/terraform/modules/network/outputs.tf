output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnets: the load balancer only."
  value       = aws_subnet.public[*].id
}

output "public_subnet_cidrs" {
  description = "CIDRs of the public subnets: where the load balancer's addresses come from (COFFER_TRUSTED_PROXIES)."
  value       = aws_subnet.public[*].cidr_block
}

output "private_app_subnet_ids" {
  description = "Private subnets for the Coffer tasks."
  value       = aws_subnet.private_app[*].id
}

output "private_db_subnet_ids" {
  description = "Private subnets for the database."
  value       = aws_subnet.private_db[*].id
}

output "alb_security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.alb.id
}

output "tasks_security_group_id" {
  description = "Security group of the Coffer tasks."
  value       = aws_security_group.tasks.id
}

output "db_security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.db.id
}
