// Package statefile owns how havip's state files reach the disk and come
// back. Write is atomic and durable: a reader sees the old file or the new
// one, never a mix, and after Write returns the new one survives a power
// cut. Read treats a file that is empty (a power cut before its data
// reached the disk) or that does not decode as missing: it moves the file
// aside, says so once in the log, and lets the caller start again from the
// kernel's truth instead of refusing to start.
//
// It knows nothing of what the files hold, never creates directories and
// never deletes a state file: an unusable one is kept, renamed, for a
// human to look at.
package statefile

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Write replaces the file at path with data: it writes a temporary file in
// the same directory, syncs and closes it, renames it over path and syncs
// the directory, so the rename itself is on the disk. The directory must
// exist. A failure before the rename leaves path untouched and no temporary
// file behind; one syncing the directory after it is returned too, as the
// new file may then not survive a power cut.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("statefile: save %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm) // CreateTemp made it 0600
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("statefile: save %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("statefile: save %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Read reads the file at path and hands its contents to decode. It returns
// found=false and no error when the file does not exist, and also when it
// is empty or decode fails: then the file is renamed to
// PATH.corrupt-YYYYMMDDTHHMMSSZ (UTC, with "-N" added if that name is
// taken) and one line on log (slog.Default() if nil) says why and where it
// went. decode must leave the caller's state alone when it fails. Any other
// error, including one renaming the file aside, is returned.
func Read(path string, log *slog.Logger, decode func([]byte) error) (found bool, err error) {
	return read(path, log, decode, time.Now())
}

func read(path string, log *slog.Logger, decode func([]byte) error, now time.Time) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("statefile: %w", err)
	}
	why := "empty file"
	if len(b) > 0 {
		err := decode(b)
		if err == nil {
			return true, nil
		}
		why = err.Error()
	}
	aside, err := moveAside(path, now)
	if err != nil {
		return false, fmt.Errorf("statefile: %s is unusable (%s) and could not be moved aside: %w", path, why, err)
	}
	if log == nil {
		log = slog.Default()
	}
	log.Warn("statefile: unusable state file moved aside; starting from the current state",
		"file", path, "reason", why, "moved_to", aside)
	return false, nil
}

// moveAside renames path to a name not yet taken and returns that name.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	aside := base
	for n := 1; ; n++ {
		_, err := os.Lstat(aside)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return "", err
		}
		aside = base + "-" + strconv.Itoa(n)
	}
	return aside, os.Rename(path, aside)
}
