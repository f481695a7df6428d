package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Options are where Parse gets what lies outside the file itself. A nil
// function means the real thing: os.Getenv, os.ReadFile, filepath.Glob.
type Options struct {
	// Getenv expands ${NAME} in values. An empty result counts as unset.
	Getenv func(name string) string
	// ReadFile reads the rule files named by include.
	ReadFile func(name string) ([]byte, error)
	// Glob resolves include patterns (already joined to the including
	// file's directory), with filepath.Glob's semantics: matches sorted,
	// an error only for a malformed pattern.
	Glob func(pattern string) ([]string, error)
}

// Load reads, decodes, validates and fills in the defaults of the
// kvwatch.yaml at path and the rule files it includes. ${NAME} is expanded
// with getenv (os.Getenv when nil). Every problem found is returned at once
// as an *Errors.
func Load(path string, getenv func(string) string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Errors{List: []*Error{{File: path, Msg: ioMessage(err)}}}
	}
	return Parse(path, data, Options{Getenv: getenv})
}

// Parse is Load for a file already read: name is used in errors and to
// resolve includes, data is its content. On success the File is validated
// and has its defaults applied (ApplyDefaults); otherwise the error is an
// *Errors listing every problem.
func Parse(name string, data []byte, opts Options) (*File, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	if opts.Glob == nil {
		opts.Glob = filepath.Glob
	}
	p := &loader{opts: opts, errs: newCollector(), meta: newMeta()}
	f := &File{}
	p.decodeFile(name, data, reflect.ValueOf(f).Elem())
	for i := range f.Rules {
		p.meta.rules = append(p.meta.rules, origin{file: name, index: i})
	}
	p.includes(name, f)
	optionalReceivers(f, name, p.meta, p.errs)
	// Validation runs even when decoding failed, to report everything at
	// once; it keeps quiet about values that could not be decoded.
	validate(f, name, p.meta, p.errs)
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	f.ApplyDefaults()
	f.name, f.meta = name, p.meta
	return f, nil
}

// A file may take baseDecodeSteps plus aliasFactor steps per node written
// in it to decode: aliases can make a few kilobytes stand for billions of
// nodes, which no real config needs.
const (
	baseDecodeSteps = 100_000
	aliasFactor     = 10
)

// countNodes counts the nodes of a tree as written, not following aliases.
func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

type loader struct {
	opts Options
	errs *collector
	meta *meta
}

var (
	rulesFileType = reflect.TypeFor[RulesFile]()
	yamlLineRE    = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)
)

// decodeFile parses data as one YAML document and decodes it into v (a
// File or a RulesFile), collecting every error. It reports whether the
// YAML itself was well-formed.
func (p *loader) decodeFile(name string, data []byte, v reflect.Value) bool {
	p.errs.addFile(name)
	root, ok := p.parseYAML(name, data)
	if !ok {
		return false
	}
	if root == nil {
		return true // an empty document: nothing configured
	}
	budget := baseDecodeSteps + aliasFactor*countNodes(root)
	d := &decoder{file: name, getenv: p.opts.Getenv, errs: p.errs, meta: p.meta, budget: &budget}
	d.root(root, v)
	return true
}

// parseYAML returns the root node of the single document in data, nil for
// an empty one.
func (p *loader) parseYAML(name string, data []byte) (root *yaml.Node, ok bool) {
	defer func() {
		// The parser is not supposed to panic; if it does, the input is
		// still only a bad config file.
		if r := recover(); r != nil {
			p.errs.add(name, pos{}, "", fmt.Sprintf("cannot parse YAML: %v", r))
			root, ok = nil, false
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		p.yamlError(name, err)
		return nil, false
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		p.errs.add(name, pos{next.Line, next.Column}, "", "a second YAML document (---) is not allowed: put everything in one")
		return nil, false
	case !errors.Is(err, io.EOF):
		p.yamlError(name, err)
		return nil, false
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, true
		}
		return doc.Content[0], true
	}
	return &doc, true
}

// parserProblems are the messages of yaml's parser (as opposed to its
// scanner). For these yaml reports a 0-based line: that of the problem or of
// the block around it.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

func (p *loader) yamlError(name string, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	switch {
	case strings.HasPrefix(msg, "unknown anchor"):
		line = 0 // yaml does not say where
	case parserProblems[msg]:
		line++
	case line == 0:
		line = 1 // yaml leaves out "line 0" of the scanner's problems
	}
	p.errs.add(name, pos{line: line}, "", "invalid YAML: "+msg)
}

// includes reads the rule files f.Include names and appends their rules.
func (p *loader) includes(name string, f *File) {
	dir := filepath.Dir(name)
	self := filepath.Clean(name)
	done := map[string]bool{self: true}
	for i, pattern := range f.Include {
		path := fmt.Sprintf("include[%d]", i)
		at := p.meta.pos(name, path)
		if p.meta.bad(name, path) {
			continue // already reported: an unset variable, say
		}
		if pattern == "" {
			p.errs.add(name, at, path, "empty include pattern")
			continue
		}
		full := pattern
		if !filepath.IsAbs(full) {
			full = filepath.Join(dir, pattern)
		}
		matches, err := p.opts.Glob(full)
		if err != nil {
			p.errs.add(name, at, path, fmt.Sprintf("bad pattern %s: %v", p.meta.show(name, path, pattern), err))
			continue
		}
		slices.Sort(matches)
		n := 0
		for _, m := range matches {
			if filepath.Clean(m) == self {
				continue // a pattern like *.yaml also matches the main file
			}
			n++
			if done[filepath.Clean(m)] {
				continue // matched by an earlier pattern too: included once
			}
			done[filepath.Clean(m)] = true
			data, err := p.opts.ReadFile(m)
			if err != nil {
				p.errs.add(name, at, path, fmt.Sprintf("included file %s: %s", m, ioMessage(err)))
				continue
			}
			var rf RulesFile
			if !p.decodeFile(m, data, reflect.ValueOf(&rf).Elem()) {
				continue
			}
			for j := range rf.Rules {
				p.meta.rules = append(p.meta.rules, origin{file: m, index: j})
			}
			f.Rules = append(f.Rules, rf.Rules...)
		}
		if n == 0 {
			p.errs.add(name, at, path, fmt.Sprintf("%s matches no files", p.meta.show(name, path, pattern)))
		}
	}
}

// ioMessage is the text of a file system error without the file's name,
// which the message already gives.
func ioMessage(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "cannot read: " + pe.Err.Error()
	}
	return "cannot read: " + err.Error()
}

// Error is one problem in a config file.
type Error struct {
	File   string // the file's name as given to Load or Parse, or as the include glob matched it
	Line   int    // 1-based; 0 when unknown
	Column int    // 1-based; 0 when unknown
	Path   string // the key, e.g. rules[3].match.vaults; "" for the file as a whole
	Msg    string
}

// Error formats e as file:line:col: path: message, leaving out what is
// unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(":" + strconv.Itoa(e.Column))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config file and the files it
// includes, sorted by file (the main file first, then included files in the
// order they were read), line and column.
type Errors struct {
	List []*Error
}

// Error is one error per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find an individual *Error.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(e.List))
	for i, x := range e.List {
		out[i] = x
	}
	return out
}

// maxErrors stops a file made of nothing but mistakes (or an alias
// repeating one a million times) from producing an endless list.
const maxErrors = 500

type collector struct {
	list   []*Error
	files  map[string]int // file -> the order it was read in
	capped bool
}

func newCollector() *collector { return &collector{files: map[string]int{}} }

func (c *collector) addFile(name string) {
	if _, ok := c.files[name]; !ok {
		c.files[name] = len(c.files)
	}
}

func (c *collector) add(file string, at pos, path, msg string) {
	if len(c.list) >= maxErrors {
		c.capped = true
		return
	}
	c.list = append(c.list, &Error{File: file, Line: at.line, Column: at.col, Path: path, Msg: msg})
}

func (c *collector) err() error {
	if len(c.list) == 0 {
		return nil
	}
	list := slices.Clone(c.list)
	slices.SortStableFunc(list, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(c.rank(a.File), c.rank(b.File)),
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Column, b.Column),
		)
	})
	// The same mistake reached twice (through an alias, say) is shown once.
	list = slices.CompactFunc(list, func(a, b *Error) bool { return *a == *b })
	if c.capped {
		list = append(list, &Error{Msg: fmt.Sprintf("too many errors; only the first %d are shown", maxErrors)})
	}
	return &Errors{List: list}
}

func (c *collector) rank(file string) int {
	if r, ok := c.files[file]; ok {
		return r
	}
	return len(c.files)
}
