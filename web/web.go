// Package web holds the server-rendered pages and their static files, embedded in the binary
// and parsed once at start-up.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"path"
	"strings"
)

//go:embed templates/*.html static
var files embed.FS

// Views are the pages every build must contain; Parse fails at start-up if one is missing.
var Views = []string{"index.html", "setup.html", "setup_done.html", "setup_closed.html", "invitation.html", "account.html",
	"login.html", "login_totp.html", "totp.html", "totp_codes.html", "reset.html", "reset_done.html", "oidc_error.html",
	"dash_tenants.html", "dash_projects.html", "dash_project.html", "dash_env.html", "dash_row.html", "dash_error.html",
	"dash_bulk.html", "dash_compare.html", "dash_history.html", "dash_at.html", "dash_audit.html", "dash_tokens.html",
	"dash_keys.html", "dash_webhooks.html", "dash_service_tokens.html", "dash_settings.html",
	"dash_members.html", "dash_project_members.html"}

// Scripts are the static files the dashboard's pages load, each checked at start-up.
var Scripts = []string{"vendor/htmx-2.0.11.min.js", "coffer.js", "coffer.css"}

// Parse parses every template and checks that each view exists; templates reach static files
// through {{asset "name"}}, their content-hashed URL.
func Parse() (*template.Template, *Assets, error) {
	assets, err := newAssets(Static())
	if err != nil {
		return nil, nil, err
	}
	for _, s := range Scripts {
		if _, err := assets.URL(s); err != nil {
			return nil, nil, err
		}
	}
	t, err := template.New("").Funcs(template.FuncMap{"asset": assets.URL}).ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, nil, fmt.Errorf("parse templates: %w", err)
	}
	for _, v := range Views {
		if t.Lookup(v) == nil {
			return nil, nil, fmt.Errorf("template %s is missing", v)
		}
	}
	return t, assets, nil
}

// Static returns the static files.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the directory is embedded above; a failure is a build mistake
	}
	return sub
}

// Assets names every static file by its content: "coffer.css" is served as
// "/static/coffer.<first 12 hex digits of its SHA-256>.css", so a browser may cache it for
// good and a new build's file has a new URL.
type Assets struct {
	urls  map[string]string // file name > URL
	names map[string]string // hashed name > file name
}

func newAssets(fsys fs.FS) (*Assets, error) {
	a := &Assets{urls: map[string]string{}, names: map[string]string{}}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:6]) + ext
		a.urls[name], a.names[hashed] = "/static/"+hashed, name
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("static files: %w", err)
	}
	return a, nil
}

// URL is the content-hashed URL of a static file.
func (a *Assets) URL(name string) (string, error) {
	u, ok := a.urls[name]
	if !ok {
		return "", fmt.Errorf("no static file %s", name)
	}
	return u, nil
}

// File is the static file a hashed name (the URL's path after /static/) stands for.
func (a *Assets) File(hashed string) (string, bool) {
	name, ok := a.names[hashed]
	return name, ok
}
