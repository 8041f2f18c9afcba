// Package web holds Steward's server-rendered pages: html/template files
// and static assets, embedded so the binary needs nothing on disk. It
// imports no store, policy or ledger package; handlers elsewhere execute
// its templates.
package web

import (
	"embed"
	"io/fs"
)

//go:embed templates/*.html
var files embed.FS

// Templates holds the page templates (login.html, consent.html, account.html) at its root.
var Templates fs.FS = mustSub(files, "templates")

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}
