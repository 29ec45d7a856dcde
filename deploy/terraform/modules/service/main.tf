# Coffer on ECS Fargate: desired_count tasks in the private subnets, no public IP, read-only root
# filesystem, a non-root user, only /tmp writable. Secrets come from Secrets Manager through the
# execution role; the task role may use Coffer's KMS key only under Coffer's encryption contexts.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  container_name = "coffer"
  region         = data.aws_region.current.name

  # Only names from Coffer's configuration table (README.md, internal/app/config.go).
  environment = concat([
    { name = "COFFER_LISTEN", value = "0.0.0.0:${var.service_port}" },
    { name = "COFFER_BASE_URL", value = var.base_url },
    { name = "COFFER_TLS_PROXY", value = "true" },
    { name = "COFFER_TRUSTED_PROXIES", value = join(",", var.trusted_proxy_cidrs) },
    { name = "COFFER_KMS", value = "awskms" },
    { name = "COFFER_KMS_KEY_ID", value = var.kms_key_arn },
    { name = "COFFER_KMS_REGION", value = local.region },
    { name = "COFFER_LOG_FORMAT", value = "json" },
    { name = "COFFER_LOG_LEVEL", value = var.log_level },
    ], var.bootstrap_email == null ? [] : [
    { name = "COFFER_BOOTSTRAP_EMAIL", value = var.bootstrap_email },
  ])

  secrets = [
    { name = "COFFER_DATABASE_URL", valueFrom = aws_secretsmanager_secret.database_url.arn },
    { name = "COFFER_BOOTSTRAP_TOKEN", valueFrom = aws_secretsmanager_secret.bootstrap_token.arn },
  ]
}

# --- Secrets (containers only: values are put by an operator, never held in Terraform state) ---

resource "aws_secretsmanager_secret" "database_url" {
  name                    = "${var.name}/database-url"
  description             = "COFFER_DATABASE_URL: postgres://coffer:<password>@<host>:5432/coffer?sslmode=verify-full"
  kms_key_id              = var.infra_kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret" "bootstrap_token" {
  name                    = "${var.name}/bootstrap-token"
  description             = "COFFER_BOOTSTRAP_TOKEN: creates the first owner; remove after first sign-in"
  kms_key_id              = var.infra_kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = var.tags
}

# --- Logs ---

resource "aws_cloudwatch_log_group" "coffer" {
  name              = "/ecs/${var.name}"
  kms_key_id        = var.infra_kms_key_arn
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# Container Insights writes here; created first so that the group is encrypted and expires,
# rather than created by ECS with AWS-owned encryption.
resource "aws_cloudwatch_log_group" "container_insights" {
  name              = "/aws/ecs/containerinsights/${var.name}/performance"
  kms_key_id        = var.infra_kms_key_arn
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# --- IAM ---

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${data.aws_partition.current.partition}:ecs:${local.region}:${data.aws_caller_identity.current.account_id}:*"]
    }
  }
}

# The task role: what Coffer itself may do. Nothing but its KMS key.
resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  description        = "Coffer tasks: use of Coffer's KMS key under Coffer's encryption contexts"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "task" {
  # Start-up and /readyz check the key with DescribeKey (it has no encryption context).
  statement {
    sid       = "DescribeCofferKey"
    actions   = ["kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }

  # Environment data keys: the context names tenant, project and environment, and nothing else.
  statement {
    sid       = "EnvironmentDataKeys"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["tenant", "project", "environment"]
    }

    condition {
      test     = "Null"
      variable = "kms:EncryptionContext:tenant"
      values   = ["false"]
    }

    condition {
      test     = "Null"
      variable = "kms:EncryptionContext:project"
      values   = ["false"]
    }

    condition {
      test     = "Null"
      variable = "kms:EncryptionContext:environment"
      values   = ["false"]
    }
  }

  # The platform data key and key-check records, named by their purpose.
  statement {
    sid       = "PlatformKeyAndKeyChecks"
    actions   = ["kms:Encrypt", "kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = ["tenant", "purpose"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:purpose"
      values   = ["coffer platform key", "coffer key check"]
    }
  }

  dynamic "statement" {
    for_each = length(var.tenant_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "TenantOwnedKeys"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt"]
      resources = var.tenant_kms_key_arns

      condition {
        test     = "ForAllValues:StringEquals"
        variable = "kms:EncryptionContextKeys"
        values   = ["tenant", "project", "environment", "purpose"]
      }

      condition {
        test     = "Null"
        variable = "kms:EncryptionContext:tenant"
        values   = ["false"]
      }
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "coffer-kms"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# The execution role: what ECS does to start a task (pull the image, read the two secrets,
# write logs). Coffer's code never runs with it.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  description        = "ECS agent for Coffer: image pull, secrets, logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrAuthorizationToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [1] : []
    content {
      sid = "PullCofferImage"
      actions = [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
      ]
      resources = var.ecr_repository_arns
    }
  }

  statement {
    sid     = "WriteLogs"
    actions = ["logs:CreateLogStream", "logs:PutLogEvents"]
    #tfsec:ignore:aws-iam-no-policy-wildcards Log streams are named at run time; ":*" covers the streams of this one log group only.
    resources = ["${aws_cloudwatch_log_group.coffer.arn}:*"]
  }

  statement {
    sid       = "ReadCofferSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.database_url.arn, aws_secretsmanager_secret.bootstrap_token.arn]
  }

  statement {
    sid       = "DecryptCofferSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.infra_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "coffer-start-task"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- ECS ---

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags

  depends_on = [aws_cloudwatch_log_group.container_insights]
}

resource "aws_ecs_task_definition" "coffer" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  task_role_arn            = aws_iam_role.task.arn
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Task-local scratch space, the only writable path: Coffer on Postgres with AWS KMS writes no
  # data directory.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([
    {
      name                   = local.container_name
      image                  = var.image
      essential              = true
      readonlyRootFilesystem = true
      user                   = "65532:65532" # distroless "nonroot"; a constant, so no caller can make it root
      privileged             = false

      portMappings = [
        { containerPort = var.service_port, protocol = "tcp" },
      ]

      environment = local.environment
      secrets     = local.secrets

      mountPoints = [
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]

      linuxParameters = {
        capabilities = { drop = ["ALL"] }
      }

      healthCheck = {
        command     = ["CMD", "/coffer-server", "healthcheck"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.coffer.name
          awslogs-region        = local.region
          awslogs-stream-prefix = local.container_name
        }
      }
    },
  ])

  tags = var.tags
}

resource "aws_ecs_service" "coffer" {
  name                              = var.name
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.coffer.arn
  desired_count                     = var.desired_count
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  health_check_grace_period_seconds = 60
  enable_execute_command            = false
  propagate_tags                    = "SERVICE"
  wait_for_steady_state             = false

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [var.security_group_id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = var.target_group_arn
    container_name   = local.container_name
    container_port   = var.service_port
  }

  tags = var.tags
}
