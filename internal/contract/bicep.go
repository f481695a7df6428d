// Package contract checks the contract between kvwatch's code, its Functions
// bindings (function-app/, host.json) and its infrastructure (infra/*.bicep):
// every setting the code or a binding reads is set, every role the app needs
// is assigned, names agree. Nothing here can compile Bicep, so this file is a
// small purpose-built reader of Bicep's syntax: enough to list declarations
// and walk object literals, not a validator.
package contract

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"
)

// A File is one parsed .bicep or .bicepparam file.
type File struct {
	Path  string
	Src   string
	Decls []*Decl
}

// A Decl is a top-level declaration (param, var, resource, module, output,
// type, targetScope...), or a resource nested in another resource's body.
type Decl struct {
	Kind     string // "param", "var", "resource", "module", "output", "type", "targetScope", ...
	Name     string // symbolic name
	Type     string // resource: "Microsoft.X/y@version"; module: path; param/output: type text
	Existing bool   // resource ... existing
	Value    *Value // after '='; nil for a param without default
	Line     int
	File     *File
}

// ResourceType is Type without the API version.
func (d *Decl) ResourceType() string {
	t, _, _ := strings.Cut(d.Type, "@")
	return t
}

// APIVersion is the API version of a resource declaration.
func (d *Decl) APIVersion() string {
	_, v, _ := strings.Cut(d.Type, "@")
	return v
}

// Body is the object literal a resource or module declaration assigns,
// looking through `if (...)` and `[for ...: ...]`.
func (d *Decl) Body() *Object {
	if d.Value == nil {
		return nil
	}
	return d.Value.Body()
}

// A Value is an expression as written. Text is its source. Object is set when
// the value is an object literal, Array when it is an array literal (a `for`
// comprehension has its body as the only element), and Inner lists the object
// literals found anywhere inside an expression that is neither (a union(...)
// argument, a branch of a ternary, the body after `if (...)`).
type Value struct {
	Text   string
	Object *Object
	Array  []*Value
	For    bool // an array comprehension
	Inner  []*Object
	Line   int

	literal    string
	isLiteral  bool // a single string literal without interpolation
	isKeyword  bool // true, false, null or a number
	identifier bool // a single identifier or dotted path
}

// Literal returns the value of a plain string literal (no interpolation).
func (v *Value) Literal() (string, bool) {
	if v == nil || !v.isLiteral {
		return "", false
	}
	return v.literal, true
}

// Body is the object literal this value stands for, if any.
func (v *Value) Body() *Object {
	switch {
	case v == nil:
		return nil
	case v.Object != nil:
		return v.Object
	case v.For && len(v.Array) == 1:
		return v.Array[0].Body()
	case len(v.Inner) > 0:
		return v.Inner[len(v.Inner)-1]
	}
	return nil
}

// Objects returns the object literals of this value: itself when it is one,
// else the ones found inside it.
func (v *Value) Objects() []*Object {
	if v == nil {
		return nil
	}
	if v.Object != nil {
		return []*Object{v.Object}
	}
	var out []*Object
	out = append(out, v.Inner...)
	for _, e := range v.Array {
		out = append(out, e.Objects()...)
	}
	return out
}

// An Object is an object literal: properties in source order, and resources
// declared inside it.
type Object struct {
	Props     []*Prop
	Resources []*Decl
	Line      int
}

// A Prop is one key: value pair.
type Prop struct {
	Key   string
	Value *Value
	Line  int
}

// Get returns the value of key, or nil.
func (o *Object) Get(key string) *Value {
	if o == nil {
		return nil
	}
	for _, p := range o.Props {
		if p.Key == key {
			return p.Value
		}
	}
	return nil
}

// Path follows keys through nested object literals: o.Path("a", "b").
func (o *Object) Path(keys ...string) *Value {
	cur := o
	var v *Value
	for i, k := range keys {
		v = cur.Get(k)
		if v == nil {
			return nil
		}
		if i < len(keys)-1 {
			cur = v.Object
			if cur == nil {
				return nil
			}
		}
	}
	return v
}

// Keys lists the keys in source order.
func (o *Object) Keys() []string {
	if o == nil {
		return nil
	}
	out := make([]string, len(o.Props))
	for i, p := range o.Props {
		out[i] = p.Key
	}
	return out
}

// Lookups on a file.

// Find returns the declaration of kind and name, or nil.
func (f *File) Find(kind, name string) *Decl {
	for _, d := range f.Decls {
		if d.Kind == kind && d.Name == name {
			return d
		}
	}
	return nil
}

// Resources returns every resource declaration, nested ones included.
func (f *File) Resources() []*Decl {
	var out []*Decl
	var walk func(ds []*Decl)
	walk = func(ds []*Decl) {
		for _, d := range ds {
			if d.Kind != "resource" {
				continue
			}
			out = append(out, d)
			if b := d.Body(); b != nil {
				walk(b.Resources)
			}
		}
	}
	walk(f.Decls)
	return out
}

// ResourcesOfType returns the resource declarations of one type (no version).
func (f *File) ResourcesOfType(typ string) []*Decl {
	var out []*Decl
	for _, d := range f.Resources() {
		if strings.EqualFold(d.ResourceType(), typ) {
			out = append(out, d)
		}
	}
	return out
}

// Symbol returns the resource, module, var or param declared under name.
func (f *File) Symbol(name string) *Decl {
	for _, d := range f.Resources() {
		if d.Name == name {
			return d
		}
	}
	for _, d := range f.Decls {
		if d.Name == name && d.Kind != "output" {
			return d
		}
	}
	return nil
}

// ParseFile reads and parses one file.
func ParseFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, string(b))
}

// ParseDir parses every .bicep and .bicepparam file under dir, keyed by path
// relative to dir with forward slashes.
func ParseDir(dir string) (map[string]*File, error) {
	out := map[string]*File{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".bicep") || strings.HasSuffix(path, ".bicepparam")) {
			return nil
		}
		f, err := ParseFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[filepath.ToSlash(rel)] = f
		return nil
	})
	return out, err
}

// SortedKeys returns a map's keys sorted.
func SortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------- tokens

type tokKind int

const (
	tEOF tokKind = iota
	tNewline
	tIdent
	tString
	tNumber
	tPunct
)

type token struct {
	kind       tokKind
	text       string // punctuation, identifier, number; raw source for strings
	value      string // string literal value (when not interpolated)
	interp     bool   // string has ${...}
	start, end int    // byte offsets in the source
	line       int
}

type lexer struct {
	src  string
	pos  int
	line int
	toks []token
}

func lex(src string) ([]token, error) {
	l := &lexer{src: src, line: 1}
	for {
		if err := l.next(); err != nil {
			return nil, err
		}
		if n := len(l.toks); n > 0 && l.toks[n-1].kind == tEOF {
			return l.toks, nil
		}
	}
}

func (l *lexer) emit(k tokKind, start int, text string) {
	l.toks = append(l.toks, token{kind: k, text: text, start: start, end: l.pos, line: l.line})
}

func (l *lexer) next() error {
	// Skip blanks and comments.
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			l.pos++
		case strings.HasPrefix(l.src[l.pos:], "//"):
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.pos++
			}
		case strings.HasPrefix(l.src[l.pos:], "/*"):
			end := strings.Index(l.src[l.pos+2:], "*/")
			if end < 0 {
				return fmt.Errorf("line %d: unterminated comment", l.line)
			}
			l.line += strings.Count(l.src[l.pos:l.pos+2+end+2], "\n")
			l.pos += 2 + end + 2
		default:
			goto token
		}
	}
token:
	start := l.pos
	if l.pos >= len(l.src) {
		l.emit(tEOF, start, "")
		return nil
	}
	c := l.src[l.pos]
	switch {
	case c == '\n':
		l.pos++
		l.emit(tNewline, start, "\n")
		l.line++
	case strings.HasPrefix(l.src[l.pos:], "'''"):
		end := strings.Index(l.src[l.pos+3:], "'''")
		if end < 0 {
			return fmt.Errorf("line %d: unterminated multi-line string", l.line)
		}
		body := l.src[l.pos+3 : l.pos+3+end]
		line := l.line
		l.pos += 3 + end + 3
		l.toks = append(l.toks, token{kind: tString, text: l.src[start:l.pos], value: strings.TrimPrefix(body, "\n"), start: start, end: l.pos, line: line})
		l.line += strings.Count(body, "\n")
	case c == '\'':
		return l.string()
	case c == '_' || unicode.IsLetter(rune(c)):
		for l.pos < len(l.src) && (l.src[l.pos] == '_' || isAlnum(l.src[l.pos])) {
			l.pos++
		}
		l.emit(tIdent, start, l.src[start:l.pos])
	case c >= '0' && c <= '9':
		for l.pos < len(l.src) && (isAlnum(l.src[l.pos]) || l.src[l.pos] == '.') {
			l.pos++
		}
		l.emit(tNumber, start, l.src[start:l.pos])
	default:
		// Two-character operators first, so that `=>`, `==` and `!=` are
		// never taken for an assignment.
		for _, op := range []string{"=>", "==", "!=", "<=", ">=", "&&", "||", "??", ".?", "=~", "!~"} {
			if strings.HasPrefix(l.src[l.pos:], op) {
				l.pos += 2
				l.emit(tPunct, start, op)
				return nil
			}
		}
		l.pos++
		l.emit(tPunct, start, string(c))
	}
	return nil
}

func isAlnum(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// string lexes a single-quoted string with escapes and ${...} interpolation.
func (l *lexer) string() error {
	start, line := l.pos, l.line
	l.pos++ // opening quote
	var val strings.Builder
	interp := false
	for {
		if l.pos >= len(l.src) || l.src[l.pos] == '\n' {
			return fmt.Errorf("line %d: unterminated string", line)
		}
		c := l.src[l.pos]
		switch {
		case c == '\\':
			if l.pos+1 >= len(l.src) {
				return fmt.Errorf("line %d: unterminated string", line)
			}
			switch e := l.src[l.pos+1]; e {
			case 'n':
				val.WriteByte('\n')
			case 'r':
				val.WriteByte('\r')
			case 't':
				val.WriteByte('\t')
			default: // \\ \' \$ and the rest stand for themselves
				val.WriteByte(e)
			}
			l.pos += 2
		case c == '\'':
			l.pos++
			l.toks = append(l.toks, token{kind: tString, text: l.src[start:l.pos], value: val.String(), interp: interp, start: start, end: l.pos, line: line})
			return nil
		case strings.HasPrefix(l.src[l.pos:], "${"):
			interp = true
			// Skip the interpolated expression, which may hold strings and braces.
			depth := 0
			l.pos += 2
			for {
				if l.pos >= len(l.src) {
					return fmt.Errorf("line %d: unterminated interpolation", line)
				}
				ch := l.src[l.pos]
				if ch == '\'' {
					sub := &lexer{src: l.src, pos: l.pos, line: l.line}
					if err := sub.string(); err != nil {
						return err
					}
					l.pos = sub.pos
					continue
				}
				if ch == '{' {
					depth++
				} else if ch == '}' {
					if depth == 0 {
						l.pos++
						break
					}
					depth--
				}
				l.pos++
			}
			val.WriteString("${…}")
		default:
			val.WriteByte(c)
			l.pos++
		}
	}
}

// ---------------------------------------------------------------- parser

type parser struct {
	file *File
	toks []token
	i    int
}

// Parse parses Bicep source.
func Parse(path, src string) (f *File, err error) {
	toks, err := lex(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f = &File{Path: path, Src: src}
	p := &parser{file: f, toks: toks}
	defer func() {
		if r := recover(); r != nil {
			pe, ok := r.(parseError)
			if !ok {
				panic(r)
			}
			f, err = nil, fmt.Errorf("%s:%d: %s", path, pe.line, pe.msg)
		}
	}()
	p.file.Decls = p.topLevel()
	return f, nil
}

type parseError struct {
	line int
	msg  string
}

func (p *parser) fail(format string, args ...any) {
	panic(parseError{p.peek().line, fmt.Sprintf(format, args...)})
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) peekAt(n int) token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) advance() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) is(kind tokKind, text string) bool {
	t := p.peek()
	return t.kind == kind && (text == "" || t.text == text)
}

func (p *parser) expect(kind tokKind, text string) token {
	if !p.is(kind, text) {
		p.fail("expected %q, found %q", text, p.peek().text)
	}
	return p.advance()
}

func (p *parser) skipNewlines() {
	for p.is(tNewline, "") {
		p.advance()
	}
}

// decorator skips @name(...) or @ns.name(...).
func (p *parser) decorator() {
	p.expect(tPunct, "@")
	p.expect(tIdent, "")
	for p.is(tPunct, ".") {
		p.advance()
		p.expect(tIdent, "")
	}
	if p.is(tPunct, "(") {
		p.group()
	}
}

// group skips a balanced (...), [...] or {...} and returns the object
// literals inside it.
func (p *parser) group() []*Object {
	open := p.advance().text
	closeTok := map[string]string{"(": ")", "[": "]", "{": "}"}[open]
	var inner []*Object
	for {
		t := p.peek()
		switch {
		case t.kind == tEOF:
			p.fail("unbalanced %q", open)
		case t.kind == tPunct && t.text == closeTok:
			p.advance()
			return inner
		case t.kind == tPunct && t.text == "{":
			inner = append(inner, p.object())
		case t.kind == tPunct && (t.text == "(" || t.text == "["):
			inner = append(inner, p.group()...)
		default:
			p.advance()
		}
	}
}

func (p *parser) topLevel() []*Decl {
	var decls []*Decl
	for {
		p.skipNewlines()
		t := p.peek()
		if t.kind == tEOF {
			return decls
		}
		if t.kind == tPunct && t.text == "@" {
			p.decorator()
			continue
		}
		if t.kind != tIdent {
			p.fail("unexpected %q at top level", t.text)
		}
		switch t.text {
		case "resource":
			decls = append(decls, p.resourceDecl())
		case "module", "param", "var", "output", "type", "targetScope", "metadata", "func":
			decls = append(decls, p.decl())
		default: // using, import, extension...: skip the line
			p.skipLine()
		}
	}
}

func (p *parser) skipLine() {
	for {
		t := p.peek()
		switch {
		case t.kind == tEOF || t.kind == tNewline:
			return
		case t.kind == tPunct && (t.text == "(" || t.text == "[" || t.text == "{"):
			p.group()
		default:
			p.advance()
		}
	}
}

// resourceDecl: resource NAME 'type@version' [existing] = VALUE
func (p *parser) resourceDecl() *Decl {
	kw := p.advance()
	d := &Decl{Kind: "resource", Line: kw.line, File: p.file}
	d.Name = p.expect(tIdent, "").text
	ty := p.expect(tString, "")
	d.Type = ty.value
	if p.is(tIdent, "existing") {
		p.advance()
		d.Existing = true
	}
	p.expect(tPunct, "=")
	d.Value = p.value(false)
	return d
}

// decl: KIND NAME [type text] [= VALUE]
func (p *parser) decl() *Decl {
	kw := p.advance()
	d := &Decl{Kind: kw.text, Line: kw.line, File: p.file}
	if kw.text == "targetScope" {
		p.expect(tPunct, "=")
		d.Value = p.value(false)
		return d
	}
	d.Name = p.expect(tIdent, "").text
	// The type (param, output), module path: everything up to '=' at depth 0.
	start := p.peek().start
	end := start
	for {
		t := p.peek()
		if t.kind == tEOF || t.kind == tNewline || t.kind == tPunct && t.text == "=" {
			break
		}
		if kw.text == "module" && t.kind == tString {
			d.Type = t.value
		}
		if t.kind == tPunct && (t.text == "(" || t.text == "[" || t.text == "{") {
			p.group()
		} else {
			p.advance()
		}
		end = p.toks[p.i-1].end
	}
	if kw.text != "module" && end > start {
		d.Type = strings.TrimSpace(p.file.Src[start:end])
	}
	if p.is(tPunct, "=") {
		p.advance()
		d.Value = p.value(false)
	}
	return d
}

// value parses an expression up to a newline at depth 0 (or, inside an array
// or object, a comma or the closing bracket).
func (p *parser) value(inList bool) *Value {
	p.skipNewlines()
	first := p.peek()
	v := &Value{Line: first.line}
	start := first.start
	n := 0
	for {
		t := p.peek()
		if t.kind == tEOF || t.kind == tNewline {
			break
		}
		if t.kind == tPunct && (t.text == "}" || t.text == "]" || t.text == ")") {
			break
		}
		if inList && t.kind == tPunct && t.text == "," {
			break
		}
		n++
		switch {
		case t.kind == tPunct && t.text == "{":
			o := p.object()
			if n == 1 {
				v.Object = o
			} else {
				v.Inner = append(v.Inner, o)
			}
		case t.kind == tPunct && t.text == "[":
			if n == 1 {
				p.array(v)
			} else {
				v.Inner = append(v.Inner, p.group()...)
			}
		case t.kind == tPunct && t.text == "(":
			v.Inner = append(v.Inner, p.group()...)
		default:
			p.advance()
		}
	}
	end := start
	if p.i > 0 && p.toks[p.i-1].end > start {
		end = p.toks[p.i-1].end
	}
	v.Text = strings.TrimSpace(p.file.Src[start:end])
	if n > 1 && v.Object != nil { // an object followed by more: an expression
		v.Inner = append([]*Object{v.Object}, v.Inner...)
		v.Object = nil
	}
	if n == 1 {
		switch first.kind {
		case tString:
			v.isLiteral = !first.interp
			v.literal = first.value
		case tNumber:
			v.isKeyword = true
		case tIdent:
			switch first.text {
			case "true", "false", "null":
				v.isKeyword = true
			default:
				v.identifier = true
			}
		}
	}
	return v
}

// array parses [ items ] or [for ...: body] into v.
func (p *parser) array(v *Value) {
	p.expect(tPunct, "[")
	p.skipNewlines()
	if p.is(tIdent, "for") {
		v.For = true
		// The loop head runs to the ':' at depth 0.
		for !p.is(tPunct, ":") {
			if p.peek().kind == tEOF {
				p.fail("unterminated for")
			}
			if t := p.peek(); t.kind == tPunct && (t.text == "(" || t.text == "[" || t.text == "{") {
				p.group()
				continue
			}
			p.advance()
		}
		p.advance()
		v.Array = append(v.Array, p.value(false))
		p.skipNewlines()
		p.expect(tPunct, "]")
		return
	}
	for {
		p.skipNewlines()
		for p.is(tPunct, ",") {
			p.advance()
			p.skipNewlines()
		}
		if p.is(tPunct, "]") {
			p.advance()
			return
		}
		if p.peek().kind == tEOF {
			p.fail("unterminated array")
		}
		v.Array = append(v.Array, p.value(true))
	}
}

// object parses { key: value ... } including nested resource declarations.
func (p *parser) object() *Object {
	open := p.expect(tPunct, "{")
	o := &Object{Line: open.line}
	for {
		p.skipNewlines()
		for p.is(tPunct, ",") {
			p.advance()
			p.skipNewlines()
		}
		t := p.peek()
		switch {
		case t.kind == tEOF:
			p.fail("unterminated object opened on line %d", open.line)
		case t.kind == tPunct && t.text == "}":
			p.advance()
			return o
		case t.kind == tPunct && t.text == "@":
			p.decorator()
			continue
		case t.kind == tIdent && t.text == "resource" && p.peekAt(1).kind == tIdent:
			o.Resources = append(o.Resources, p.resourceDecl())
			continue
		}
		var key string
		switch t.kind {
		case tIdent:
			key = t.text
		case tString:
			key = t.value
			if t.interp {
				key = t.text
			}
		default:
			p.fail("expected a property name, found %q", t.text)
		}
		p.advance()
		if p.is(tPunct, "?") { // optional property in a type
			p.advance()
		}
		p.expect(tPunct, ":")
		o.Props = append(o.Props, &Prop{Key: key, Value: p.value(true), Line: t.line})
	}
}

// ---------------------------------------------------------------- helpers

var identRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// Identifiers lists the identifiers an expression mentions (outside strings).
func (v *Value) Identifiers() []string {
	if v == nil {
		return nil
	}
	toks, err := lex(v.Text)
	if err != nil {
		return identRE.FindAllString(v.Text, -1)
	}
	var out []string
	for _, t := range toks {
		if t.kind == tIdent {
			out = append(out, t.text)
		}
	}
	return out
}
