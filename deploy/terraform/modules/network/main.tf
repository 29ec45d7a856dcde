# One VPC over az_count zones with three subnet tiers:
#   public       the load balancer only (no instance gets a public IP; the only route out is the IGW)
#   private app  Coffer's tasks and the interface VPC endpoints; no route to the internet
#   private db   RDS; no route to the internet
# Tasks reach AWS APIs through VPC endpoints (interface endpoints with private DNS, S3 gateway for
# ECR image layers), so no NAT gateway exists.

data "aws_availability_zones" "available" {
  state = "available"
}

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, var.az_count)

  public_cidrs      = [for i in range(var.az_count) : cidrsubnet(var.cidr_block, 8, i)]
  private_app_cidrs = [for i in range(var.az_count) : cidrsubnet(var.cidr_block, 8, 10 + i)]
  private_db_cidrs  = [for i in range(var.az_count) : cidrsubnet(var.cidr_block, 8, 20 + i)]

  interface_endpoints = toset(["kms", "secretsmanager", "ecr.api", "ecr.dkr", "logs"])
}

resource "aws_vpc" "this" {
  cidr_block           = var.cidr_block
  enable_dns_support   = true
  enable_dns_hostnames = true # private DNS on the interface endpoints needs both
  tags                 = merge(var.tags, { Name = var.name })
}

# The default security group allows all traffic between its members: strip it of every rule so
# nothing placed in it by accident can talk.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-default-unused" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  count                   = var.az_count
  vpc_id                  = aws_vpc.this.id
  cidr_block              = local.public_cidrs[count.index]
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = false
  tags                    = merge(var.tags, { Name = "${var.name}-public-${local.azs[count.index]}", Tier = "public" })
}

resource "aws_subnet" "private_app" {
  count                   = var.az_count
  vpc_id                  = aws_vpc.this.id
  cidr_block              = local.private_app_cidrs[count.index]
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = false
  tags                    = merge(var.tags, { Name = "${var.name}-private-app-${local.azs[count.index]}", Tier = "private-app" })
}

resource "aws_subnet" "private_db" {
  count                   = var.az_count
  vpc_id                  = aws_vpc.this.id
  cidr_block              = local.private_db_cidrs[count.index]
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = false
  tags                    = merge(var.tags, { Name = "${var.name}-private-db-${local.azs[count.index]}", Tier = "private-db" })
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  count          = var.az_count
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# No default route: the private tiers reach only the VPC and the S3 gateway endpoint.
resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-private" })
}

resource "aws_route_table_association" "private_app" {
  count          = var.az_count
  subnet_id      = aws_subnet.private_app[count.index].id
  route_table_id = aws_route_table.private.id
}

resource "aws_route_table_association" "private_db" {
  count          = var.az_count
  subnet_id      = aws_subnet.private_db[count.index].id
  route_table_id = aws_route_table.private.id
}

# --- Security groups: each names exactly the peers it talks to. ---

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Coffer load balancer: HTTPS (and the HTTP redirect) from clients, HTTP to the tasks"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-alb" })
}

resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = "Coffer tasks: from the load balancer; to the database and the VPC endpoints"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-tasks" })
}

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "Coffer database: Postgres from the tasks only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-db" })
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-endpoints"
  description = "VPC interface endpoints: HTTPS from the tasks only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-endpoints" })
}

#tfsec:ignore:aws-vpc-no-public-ingress-sgr The internet-facing load balancer is the service's front door; narrow alb_ingress_cidrs to restrict it.
resource "aws_security_group_rule" "alb_https_in" {
  type              = "ingress"
  description       = "HTTPS from clients"
  security_group_id = aws_security_group.alb.id
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_blocks       = var.alb_ingress_cidrs
}

#tfsec:ignore:aws-vpc-no-public-ingress-sgr Port 80 only answers with a redirect to HTTPS.
resource "aws_security_group_rule" "alb_http_in" {
  type              = "ingress"
  description       = "HTTP from clients, redirected to HTTPS by the listener"
  security_group_id = aws_security_group.alb.id
  protocol          = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_blocks       = var.alb_ingress_cidrs
}

resource "aws_security_group_rule" "alb_to_tasks" {
  type                     = "egress"
  description              = "HTTP to the Coffer tasks"
  security_group_id        = aws_security_group.alb.id
  protocol                 = "tcp"
  from_port                = var.service_port
  to_port                  = var.service_port
  source_security_group_id = aws_security_group.tasks.id
}

resource "aws_security_group_rule" "tasks_from_alb" {
  type                     = "ingress"
  description              = "HTTP from the load balancer"
  security_group_id        = aws_security_group.tasks.id
  protocol                 = "tcp"
  from_port                = var.service_port
  to_port                  = var.service_port
  source_security_group_id = aws_security_group.alb.id
}

resource "aws_security_group_rule" "tasks_to_db" {
  type                     = "egress"
  description              = "Postgres to the database"
  security_group_id        = aws_security_group.tasks.id
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  source_security_group_id = aws_security_group.db.id
}

resource "aws_security_group_rule" "tasks_to_endpoints" {
  type                     = "egress"
  description              = "HTTPS to the VPC interface endpoints (KMS, Secrets Manager, ECR, Logs)"
  security_group_id        = aws_security_group.tasks.id
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = aws_security_group.endpoints.id
}

resource "aws_security_group_rule" "tasks_to_s3" {
  type              = "egress"
  description       = "HTTPS to S3 through the gateway endpoint (ECR image layers)"
  security_group_id = aws_security_group.tasks.id
  protocol          = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_ids   = [aws_vpc_endpoint.s3.prefix_list_id]
}

resource "aws_security_group_rule" "db_from_tasks" {
  type                     = "ingress"
  description              = "Postgres from the Coffer tasks"
  security_group_id        = aws_security_group.db.id
  protocol                 = "tcp"
  from_port                = 5432
  to_port                  = 5432
  source_security_group_id = aws_security_group.tasks.id
}

resource "aws_security_group_rule" "endpoints_from_tasks" {
  type                     = "ingress"
  description              = "HTTPS from the Coffer tasks"
  security_group_id        = aws_security_group.endpoints.id
  protocol                 = "tcp"
  from_port                = 443
  to_port                  = 443
  source_security_group_id = aws_security_group.tasks.id
}

# --- VPC endpoints ---

resource "aws_vpc_endpoint" "interface" {
  for_each            = local.interface_endpoints
  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${data.aws_region.current.name}.${each.key}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = aws_subnet.private_app[*].id
  security_group_ids  = [aws_security_group.endpoints.id]
  tags                = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

# The private subnets use S3 only for ECR image layers: the endpoint reaches that bucket and no
# other, so it cannot carry data out to an arbitrary bucket.
data "aws_iam_policy_document" "s3_endpoint" {
  statement {
    sid       = "EcrImageLayersOnly"
    actions   = ["s3:GetObject"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::prod-${data.aws_region.current.name}-starport-layer-bucket/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
  policy            = data.aws_iam_policy_document.s3_endpoint.json
  tags              = merge(var.tags, { Name = "${var.name}-s3" })
}

# --- Flow logs ---

resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/vpc/${var.name}/flow-logs"
  kms_key_id        = var.log_kms_key_arn
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.name}-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    #tfsec:ignore:aws-iam-no-policy-wildcards Log streams are named at run time; ":*" covers the streams of this one log group only.
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

resource "aws_flow_log" "this" {
  vpc_id               = aws_vpc.this.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn         = aws_iam_role.flow_logs.arn
  tags                 = var.tags
}
