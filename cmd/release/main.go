// Command release writes one of cgichat's release archives, as
// deploy.sh --package runs it: the tree at -root as -out/NAME.tar.gz and
// -out/NAME.zip, each holding it under the directory NAME, with every
// entry owned by 0:0 and modified at -mtime, in path order, so that the
// same tree and time give the same bytes (internal/release).
//
//	go run ./cmd/release -root DIR -name NAME -mtime UNIX-SECONDS -out DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"cgichat/internal/release"
)

func main() {
	root := flag.String("root", "", "the tree to archive")
	name := flag.String("name", "", "the archives' name, and the directory they hold the tree in")
	mtime := flag.Int64("mtime", -1, "every entry's modification time, in seconds since 1970 (the commit's)")
	out := flag.String("out", ".", "where the archives go")
	flag.Parse()
	if *root == "" || *name == "" || *mtime < 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: go run ./cmd/release -root DIR -name NAME -mtime UNIX-SECONDS [-out DIR]")
		os.Exit(2)
	}
	paths, err := release.Write(*out, *name, *root, time.Unix(*mtime, 0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	for _, p := range paths {
		fmt.Println(p)
	}
}
