# Coffer on AWS: the five modules wired together. See README.md for the picture and the
# operator's steps (secrets, database user, break-glass).

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Application = "coffer", ManagedBy = "terraform" }, var.tags)
  }
}

module "network" {
  source = "./modules/network"

  name               = var.name
  cidr_block         = var.vpc_cidr
  az_count           = var.az_count
  alb_ingress_cidrs  = var.alb_ingress_cidrs
  log_kms_key_arn    = module.kms.infra_key_arn
  log_retention_days = var.log_retention_days
}

# The key policy names the task role, and the task role's policy names the key: Terraform orders
# the role, then the key, then the role's policy (module inputs are separate graph nodes).
module "kms" {
  source = "./modules/kms"

  name          = var.name
  task_role_arn = module.service.task_role_arn
}

module "database" {
  source = "./modules/database"

  name                  = var.name
  subnet_ids            = module.network.private_db_subnet_ids
  security_group_id     = module.network.db_security_group_id
  kms_key_arn           = module.kms.infra_key_arn
  instance_class        = var.db_instance_class
  allocated_storage     = var.db_allocated_storage
  backup_retention_days = var.backup_retention_days
  log_retention_days    = var.log_retention_days
}

module "edge" {
  source = "./modules/edge"

  name              = var.name
  vpc_id            = module.network.vpc_id
  public_subnet_ids = module.network.public_subnet_ids
  security_group_id = module.network.alb_security_group_id
  certificate_arn   = var.certificate_arn
  domain_name       = var.domain_name
  route53_zone_id   = var.route53_zone_id
}

module "service" {
  source = "./modules/service"

  name                = var.name
  image               = var.image
  ecr_repository_arns = var.ecr_repository_arns
  desired_count       = var.desired_count
  cpu                 = var.task_cpu
  memory              = var.task_memory
  private_subnet_ids  = module.network.private_app_subnet_ids
  security_group_id   = module.network.tasks_security_group_id
  target_group_arn    = module.edge.target_group_arn
  kms_key_arn         = module.kms.coffer_key_arn
  infra_kms_key_arn   = module.kms.infra_key_arn
  tenant_kms_key_arns = var.tenant_kms_key_arns
  base_url            = "https://${var.domain_name}"
  trusted_proxy_cidrs = module.network.public_subnet_cidrs
  bootstrap_email     = var.bootstrap_email
  log_retention_days  = var.log_retention_days
}
