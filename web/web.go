// Package web holds the server-rendered pages and their static files, embedded in the binary
// and parsed once at start-up.
package web

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
)

//go:embed templates/*.html static/*
var files embed.FS

// Views are the pages every build must contain; Parse fails at start-up if one is missing.
var Views = []string{"index.html", "setup.html", "setup_done.html", "setup_closed.html", "invitation.html", "account.html",
	"login.html", "login_totp.html", "totp.html", "totp_codes.html", "reset.html", "reset_done.html", "oidc_error.html"}

// Parse parses every template and checks that each view exists.
func Parse() (*template.Template, error) {
	t, err := template.ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("parse templates: %w", err)
	}
	for _, v := range Views {
		if t.Lookup(v) == nil {
			return nil, fmt.Errorf("template %s is missing", v)
		}
	}
	return t, nil
}

// Static returns the static files.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the directory is embedded above; a failure is a build mistake
	}
	return sub
}
