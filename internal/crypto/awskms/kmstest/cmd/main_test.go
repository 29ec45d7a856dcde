package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

func TestRunServesACreatedKey(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout bytes.Buffer
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"-listen", "127.0.0.1:0", "-create-key", "-alias", "coffer"}, &stdout, pw)
		pw.Close()
		done <- err
	}()

	// The ARN is printed before the line announcing the address, which the pipe orders.
	var url string
	lines := bufio.NewScanner(pr)
	for url == "" && lines.Scan() {
		if _, rest, ok := strings.Cut(lines.Text(), "serving KMS on "); ok {
			url, _, _ = strings.Cut(rest, " ")
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if url == "" {
		t.Fatalf("no address announced; run returned %v", <-done)
	}
	arn := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(arn, "arn:aws:kms:us-east-1:111122223333:key/") {
		t.Fatalf("stdout %q is not a key ARN", arn)
	}

	client := kms.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIAKMSTEST", "secret", ""),
	}, func(o *kms.Options) { o.BaseEndpoint = aws.String(url) })
	out, err := client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/coffer")})
	if err != nil {
		t.Fatalf("DescribeKey through the alias: %v", err)
	}
	if got := aws.ToString(out.KeyMetadata.Arn); got != arn {
		t.Fatalf("alias/coffer names %q, want %q", got, arn)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-alias", "coffer"}, {"extra"}, {"-nope"}} {
		if err := run(t.Context(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
