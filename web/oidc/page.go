package oidc

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
)

// pageData is one of the flow's plain pages: a title, a sentence, and at
// most a code, a confirmation button and links. None shows anything of the
// mesh (CONTRACT.md §7: nothing before sign-in).
type pageData struct {
	Title string
	Text  string
	Code  string
	Form  *form
	Links []link
}

type form struct {
	Action, Token, Button string
}

type link struct {
	Href, Text string
}

// pageTemplate uses the UI's style sheet and class names, so that these
// pages look like the UI's sign-in page (and read well without it).
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · pwmesh</title>
<link rel="stylesheet" href="/ui/static/ui.css">
</head>
<body>
<header class="top"><div class="top-inner"><a class="brand" href="/ui/"><span class="brand-mark" aria-hidden="true">◆</span> pwmesh</a></div></header>
<main id="main" class="main">
<section class="card narrow signin" aria-labelledby="t">
<h1 id="t">{{.Title}}</h1>
<p>{{.Text}}</p>
{{- if .Code}}
<p class="code" aria-label="Code"><strong><code>{{.Code}}</code></strong></p>
{{- end}}
{{- if .Form}}
<form method="post" action="{{.Form.Action}}" class="stack">
<input type="hidden" name="csrf" value="{{.Form.Token}}">
<button type="submit" class="btn btn-primary btn-block">{{.Form.Button}}</button>
</form>
{{- end}}
{{- range .Links}}
<p><a href="{{.Href}}">{{.Text}}</a></p>
{{- end}}
</section>
</main>
</body>
</html>
`))

// page writes a plain page with the headers of every UI answer: not
// cached, not framed, no script at all.
func (h *Handler) page(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		h.log.ErrorContext(r.Context(), "oidc: render a page", "err", err)
		http.Error(w, d.Title, status)
		return
	}
	formAction := "'self'"
	if d.Form != nil {
		// The confirmation's answer redirects to the provider, and
		// browsers hold a form's redirects to form-action too.
		if o := h.providerOrigin(); o != "" {
			formAction += " " + o
		}
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action "+formAction+
		"; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// providerOrigin is the origin of the provider's authorization endpoint
// ("" before discovery).
func (h *Handler) providerOrigin() string {
	h.mu.Lock()
	p := h.prov
	h.mu.Unlock()
	if p == nil {
		return ""
	}
	u, err := url.Parse(p.oauth.Endpoint.AuthURL)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
