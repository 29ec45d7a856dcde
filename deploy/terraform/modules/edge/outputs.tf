output "dns_name" {
  description = "DNS name of the load balancer."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "Route 53 zone of the load balancer (for alias records)."
  value       = aws_lb.this.zone_id
}

output "target_group_arn" {
  description = "Target group the Coffer tasks register in."
  value       = aws_lb_target_group.this.arn

  # ECS refuses a target group that no listener uses yet.
  depends_on = [aws_lb_listener.https]
}

output "https_listener_arn" {
  description = "ARN of the HTTPS listener."
  value       = aws_lb_listener.https.arn
}

output "access_log_bucket" {
  description = "Bucket holding the load balancer access logs."
  value       = aws_s3_bucket.access_logs.id
}
