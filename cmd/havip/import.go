package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/havip/havip/internal/cli"
	"github.com/havip/havip/internal/importipvs"
	"github.com/havip/havip/internal/importka"
	"github.com/havip/havip/internal/siteout"
)

func cmdImport(args []string, stdout, stderr io.Writer) int {
	f := newFlags("import", stdout, stderr)
	imf := cli.ImportFlags(f.FlagSet)
	out, site, addrs := imf.Out, imf.Site, imf.Addresses
	pos, err := f.parse(args)
	if err != nil {
		return exitFor(err)
	}
	if len(pos) == 0 {
		fmt.Fprintln(stderr, "havip import: say what to import: keepalived MASTER.conf [BACKUP.conf], or ipvsadm [FILE|-]")
		f.usage(stderr)
		return exitInput
	}
	var result *siteout.Site
	var notes []siteout.Note
	switch kind, files := pos[0], pos[1:]; kind {
	case "keepalived":
		if len(files) < 1 || len(files) > 2 {
			fmt.Fprintln(stderr, "havip import keepalived: name the MASTER's configuration, and the BACKUP's if you have it")
			return exitInput
		}
		result, notes, err = importka.Convert(files, importka.Options{SiteName: *site, Addresses: addrs})
	case "ipvsadm":
		if *site != "" || len(addrs) > 0 {
			fmt.Fprintln(stderr, "havip import ipvsadm: --site and --address are for keepalived; ipvsadm gives a fragment without nodes")
			return exitInput
		}
		if len(files) > 1 {
			fmt.Fprintln(stderr, "havip import ipvsadm: name one file of ipvsadm-save -n output, or - for stdin")
			return exitInput
		}
		name, in := "-", io.Reader(os.Stdin)
		if len(files) == 1 && files[0] != "-" {
			file, oerr := os.Open(files[0])
			if oerr != nil {
				fmt.Fprintf(stderr, "havip import: %v\n", oerr)
				return exitInput
			}
			defer file.Close()
			name, in = files[0], file
		}
		result, notes, err = importipvs.Convert(name, in)
	default:
		fmt.Fprintf(stderr, "havip import: %q is not keepalived or ipvsadm\n", kind)
		return exitInput
	}
	if err != nil {
		fmt.Fprintf(stderr, "havip import: %v\n", err)
		return exitInput
	}
	for _, n := range notes {
		fmt.Fprintln(stderr, n)
	}
	var buf bytes.Buffer
	_ = siteout.Write(&buf, result)
	if *out == "" {
		_, err = stdout.Write(buf.Bytes())
	} else {
		err = os.WriteFile(*out, buf.Bytes(), 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "havip import: %v\n", err)
		return exitRuntime
	}
	if siteout.Unsafe(notes) {
		fmt.Fprintln(stderr, "havip import: the result is not safe to run as it stands (see the unsafe notes above): fix them before havip check")
		return exitInput
	}
	return exitOK
}
