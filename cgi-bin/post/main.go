// Command post receives chat messages: POST cgi-bin/post stores one and
// answers 201 with it. It runs under CGI, FastCGI or as a FastCGI daemon;
// run it with -h for how.
package main

import (
	"os"

	"cgichat/internal/hosting"
	"cgichat/internal/web"
)

func main() {
	p := hosting.Program{Name: "post", Summary: "stores chat messages (POST cgi-bin/post)"}
	log, level := hosting.NewLogger(p.Name)
	app := web.NewPost(log)
	app.Level = level
	os.Exit(hosting.Main(p, app, os.Args[1:]))
}
