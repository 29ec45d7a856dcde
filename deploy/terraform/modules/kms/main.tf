# Two customer managed keys:
#   - "coffer": Coffer's key-encryption key. It wraps the data keys of every environment. Only the
#     ECS task role may use it, and an explicit Deny refuses kms:Decrypt (and re-encryption, which
#     would move a wrapped key under a key someone else can decrypt with) to every other principal,
#     the account root included. The account keeps administration (policy, rotation, deletion),
#     which is the break-glass path documented in the README.
#   - "infra": encrypts what AWS services store for the deployment: RDS storage and Performance
#     Insights, the RDS master password secret, the Secrets Manager secrets, CloudWatch Logs.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"

  # Every action except the cryptographic ones: the account administers Coffer's key but cannot
  # use it.
  admin_actions = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
  ]

  # The encryption contexts Coffer passes (internal/secrets/keyring.go, internal/secrets/fields.go,
  # internal/app/keys.go, internal/secrets/keyadmin.go):
  #   {tenant, project, environment}          an environment's data key
  #   {purpose = "coffer platform key"}       the platform data key (sealed fields)
  #   {purpose = "coffer key check"}          the start-up key-check record
  #   {tenant, purpose = "coffer key check"}  the proof run when a tenant changes its key
  data_key_context_keys = ["tenant", "project", "environment"]
  record_context_keys   = ["tenant", "purpose"]
  record_purposes       = ["coffer platform key", "coffer key check"]
}

data "aws_iam_policy_document" "coffer_key" {
  statement {
    sid       = "KeyAdministrationWithoutUse"
    effect    = "Allow"
    actions   = local.admin_actions
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  statement {
    sid       = "CofferTaskDescribeKey"
    effect    = "Allow"
    actions   = ["kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [var.task_role_arn]
    }
  }

  # Environment data keys: GenerateDataKey for a new key, Decrypt on a cache miss, Encrypt when a
  # rotation rewraps a key under this one. All three context keys must be present, and no other.
  statement {
    sid       = "CofferTaskDataKeys"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [var.task_role_arn]
    }

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = local.data_key_context_keys
    }

    dynamic "condition" {
      for_each = local.data_key_context_keys
      content {
        test     = "Null"
        variable = "kms:EncryptionContext:${condition.value}"
        values   = ["false"]
      }
    }
  }

  # The platform data key and the key-check records: wrapped with Encrypt, opened with Decrypt,
  # only under Coffer's own purposes.
  statement {
    sid       = "CofferTaskRecords"
    effect    = "Allow"
    actions   = ["kms:Encrypt", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [var.task_role_arn]
    }

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = local.record_context_keys
    }

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:purpose"
      values   = local.record_purposes
    }
  }

  # The invariant: nobody but the task role decrypts with this key, whatever IAM policies or
  # grants say. An explicit Deny in the key policy wins over every Allow.
  statement {
    sid    = "DenyDecryptExceptCofferTask"
    effect = "Deny"
    actions = [
      "kms:Decrypt",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = [var.task_role_arn]
    }
  }
}

resource "aws_kms_key" "coffer" {
  description              = "${var.name}: Coffer key-encryption key (wraps environment data keys)"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  deletion_window_in_days  = var.deletion_window_in_days
  policy                   = data.aws_iam_policy_document.coffer_key.json
  tags                     = var.tags
}

resource "aws_kms_alias" "coffer" {
  name          = "alias/${var.name}-kek"
  target_key_id = aws_kms_key.coffer.key_id
}

data "aws_iam_policy_document" "infra_key" {
  # AWS services (RDS, Secrets Manager) act with the caller's IAM permissions; the account
  # delegates use of this key to IAM.
  statement {
    sid       = "AccountAdministersAndDelegatesToIAM"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  statement {
    sid    = "CloudWatchLogsForThisAccount"
    effect = "Allow"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:*"]
    }
  }
}

resource "aws_kms_key" "infra" {
  description             = "${var.name}: RDS, Performance Insights, Secrets Manager and CloudWatch Logs"
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_in_days
  policy                  = data.aws_iam_policy_document.infra_key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "infra" {
  name          = "alias/${var.name}-infra"
  target_key_id = aws_kms_key.infra.key_id
}
