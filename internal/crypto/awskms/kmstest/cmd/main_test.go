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

// serveFor runs the command until the test ends and returns its URL and the ARN it printed.
func serveFor(t *testing.T, args ...string) (url, arn string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var stdout bytes.Buffer
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, append([]string{"-listen", "127.0.0.1:0"}, args...), &stdout, pw)
		pw.Close()
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	for url == "" && lines.Scan() {
		if _, rest, ok := strings.Cut(lines.Text(), "serving KMS on "); ok {
			url, _, _ = strings.Cut(rest, " ")
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if url == "" {
		cancel()
		t.Fatalf("no address announced; run returned %v", <-done)
	}
	return url, strings.TrimSpace(stdout.String()), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

func TestImportedKeySurvivesARestart(t *testing.T) {
	t.Setenv("KMSTEST_KEY_MATERIAL", strings.Repeat("ab", 32))
	const id = "6b1f3c7e-2a4d-4e8f-9b0a-1c2d3e4f5a6b"
	client := func(url string) *kms.Client {
		return kms.NewFromConfig(aws.Config{
			Region:      "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider("AKIAKMSTEST", "secret", ""),
		}, func(o *kms.Options) { o.BaseEndpoint = aws.String(url) })
	}
	url, arn, stop := serveFor(t, "-import-key-id", id, "-alias", "coffer")
	if !strings.HasSuffix(arn, ":key/"+id) {
		t.Fatalf("imported key ARN %q", arn)
	}
	ctx := t.Context()
	enc, err := client(url).Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/coffer"), Plaintext: []byte("data key")})
	if err != nil {
		t.Fatal(err)
	}
	stop()

	url, _, stop = serveFor(t, "-import-key-id", id, "-alias", "coffer")
	defer stop()
	dec, err := client(url).Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil {
		t.Fatalf("decrypt after a restart: %v", err)
	}
	if string(dec.Plaintext) != "data key" {
		t.Fatalf("decrypt after a restart: %q", dec.Plaintext)
	}

	// Without material, or with the wrong length, it refuses to start.
	t.Setenv("KMSTEST_KEY_MATERIAL", "abcd")
	if err := run(ctx, []string{"-listen", "127.0.0.1:0", "-import-key-id", id}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "KMSTEST_KEY_MATERIAL") {
		t.Fatalf("short material: %v", err)
	}
}
