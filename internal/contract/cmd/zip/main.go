// Command zip writes a directory to a zip archive the way the Functions
// platform wants a package: paths relative to the directory, forward slashes,
// Unix permission bits kept (the custom handler binary must stay executable),
// entries sorted and timestamps fixed so the same tree gives the same archive.
//
//	go run ./internal/contract/cmd/zip -o dist/kvwatch.zip dist/app
//
// It exists so that `make package` needs nothing but Go. Like Core Tools and
// azd, it leaves out local.settings.json (dist/app has one for Core Tools'
// worker runtime; local settings are never deployed).
package main

import (
	"archive/zip"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// modTime is every entry's timestamp (zip cannot store times before 1980).
var modTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func main() {
	out := flag.String("o", "", "archive to write")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: zip -o ARCHIVE DIR")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := Zip(*out, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "zip:", err)
		os.Exit(1)
	}
}

// Zip writes the regular files under dir to the archive at out.
func Zip(out, dir string) (err error) {
	var files []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if d.Name() == "local.settings.json" {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", path)
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%s: no files", dir)
	}
	sort.Strings(files)

	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	zw := zip.NewWriter(f)
	for _, path := range files {
		if err := add(zw, dir, path); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func add(zw *zip.Writer, dir, path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		return err
	}
	h, err := zip.FileInfoHeader(info) // records the Unix mode
	if err != nil {
		return err
	}
	h.Name = filepath.ToSlash(rel)
	h.Method = zip.Deflate
	h.Modified = modTime
	w, err := zw.CreateHeader(h)
	if err != nil {
		return err
	}
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	n, err := io.Copy(w, src)
	if err != nil {
		return err
	}
	if n != info.Size() {
		return errors.New(path + ": changed while being archived")
	}
	return nil
}
