// Command stream sends a room's chat messages as Server-Sent Events:
// GET cgi-bin/stream?room=R. It runs under CGI, FastCGI or as a FastCGI
// daemon; run it with -h for how.
package main

import (
	"os"

	"cgichat/internal/hosting"
	"cgichat/internal/web"
)

func main() {
	p := hosting.Program{Name: "stream", Summary: "sends chat messages as Server-Sent Events (GET cgi-bin/stream)"}
	log, level := hosting.NewLogger(p.Name)
	app := web.NewStream(log)
	app.Level = level
	os.Exit(hosting.Main(p, app, os.Args[1:]))
}
