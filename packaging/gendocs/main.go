// Command gendocs writes havip's manual pages and its bash completion from
// the tables the code itself uses: the commands and their flag sets
// (internal/cli) and the site file's keys (conf.Keys). So the pages list
// exactly the commands, flags and keys the binary has.
//
//	go run ./packaging/gendocs -o DIR
//
// writes DIR/havip.8, DIR/havip.toml.5 (roff, man(7) macros) and DIR/havip
// (the completion script), uncompressed; make package gzips them.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	out := flag.String("o", "", "directory to write havip.8, havip.toml.5 and havip (bash completion) to")
	version := flag.String("version", "", "version shown in the pages' footer")
	examples := flag.String("examples", "examples", "the repository's examples directory (havip.toml(5) shows minimal.toml)")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: gendocs -o DIR [-version V] [-examples DIR]")
		os.Exit(1)
	}
	example, err := os.ReadFile(filepath.Join(*examples, "minimal.toml"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v (run it from the repository's top directory)\n", err)
		os.Exit(1)
	}
	if err := write(*out, page{Version: *version, Date: buildDate(), Example: string(example)}); err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
		os.Exit(2)
	}
}

// page is what the manual pages show besides the tables: the title
// lines' version and date, and havip.toml(5)'s example.
type page struct{ Version, Date, Example string }

// buildDate is SOURCE_DATE_EPOCH's date, so that a package build is
// reproducible; without it, none (man shows an empty date).
func buildDate() string {
	s, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	if err != nil {
		return ""
	}
	return time.Unix(s, 0).UTC().Format("2006-01-02")
}

// write writes the three files into dir, creating it.
func write(dir string, pg page) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gendocs: %w", err)
	}
	for name, gen := range map[string]func(*bytes.Buffer, page){
		"havip.8":      manHavip,
		"havip.toml.5": manSiteFile,
		"havip":        func(b *bytes.Buffer, _ page) { completion(b) },
	} {
		var b bytes.Buffer
		gen(&b, pg)
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("gendocs: %w", err)
		}
	}
	return nil
}
