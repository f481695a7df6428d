package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The decoder walks a yaml.Node tree into the schema structs by their yaml
// tags. Unlike yaml.Node.Decode it does not stop at the first problem: it
// reports every unknown or duplicate key, wrong type and unset variable,
// and records where each key was written (and whether its value came from
// the environment) for validation to point at.

const (
	nullTag  = "!!null"
	mergeTag = "!!merge"
)

var durationType = reflect.TypeFor[Duration]()

type pos struct{ line, col int }

// field is what the decoder learnt about one path.
type field struct {
	at   pos      // where its key (or list item) is written
	null bool     // written as null (~, null or nothing)
	bad  bool     // could not be decoded: validation says nothing more about it
	vars []string // the ${NAME}s its value was expanded from
	// unset are the ${NAME}s (with no default) that were not set.
	unset []string
}

type metaKey struct{ file, path string }

// origin is where rule i of File.Rules was written: rules[index] of file.
type origin struct {
	file  string
	index int
}

type meta struct {
	fields map[metaKey]*field
	rules  []origin
}

func newMeta() *meta { return &meta{fields: map[metaKey]*field{}} }

func (m *meta) get(file, path string) *field {
	if m == nil {
		return nil
	}
	return m.fields[metaKey{file, path}]
}

func (m *meta) set(file, path string, at pos) *field {
	k := metaKey{file, path}
	f := m.fields[k]
	if f == nil {
		f = &field{}
		m.fields[k] = f
	}
	*f = field{at: at}
	return f
}

// pos is where path was written, or else where the nearest enclosing key
// was: a missing key is reported at the mapping that lacks it.
func (m *meta) pos(file, path string) pos {
	for {
		if f := m.get(file, path); f != nil {
			return f.at
		}
		if path == "" {
			return pos{}
		}
		path = parentPath(path)
	}
}

// given reports whether path was written with a non-null value.
func (m *meta) given(file, path string) bool {
	f := m.get(file, path)
	return f != nil && !f.null
}

// bad reports whether path, or a key enclosing it, failed to decode.
func (m *meta) bad(file, path string) bool {
	for {
		if f := m.get(file, path); f != nil && f.bad {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// show quotes value for a message, unless it came from the environment: a
// variable may hold a secret, so it is named instead.
func (m *meta) show(file, path, value string) string {
	if f := m.get(file, path); f != nil && len(f.vars) > 0 {
		return fromVars(f.vars)
	}
	return quote(value)
}

func fromVars(vars []string) string {
	names := make([]string, len(vars))
	for i, v := range vars {
		names[i] = "${" + v + "}"
	}
	if len(names) == 1 {
		return "the value of " + names[0]
	}
	return "the value made from " + strings.Join(names, ", ")
}

// quote is strconv.Quote, shortened for long values.
func quote(s string) string {
	const max = 60
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// structInfo is a struct type's yaml keys.
type structInfo struct {
	keys  []string       // in declaration order
	index map[string]int // key -> field index
}

var structInfos sync.Map // reflect.Type -> *structInfo

func infoOf(t reflect.Type) *structInfo {
	if si, ok := structInfos.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{index: map[string]int{}}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !sf.IsExported() {
			continue
		}
		si.keys = append(si.keys, name)
		si.index[name] = i
	}
	structInfos.Store(t, si)
	return si
}

type decoder struct {
	file   string
	getenv func(string) string
	errs   *collector
	meta   *meta
	budget *int
}

func (d *decoder) fail(at pos, path, msg string) {
	d.errs.add(d.file, at, path, msg)
}

// failBad reports a value that could not be decoded and marks its path so
// validation leaves it alone.
func (d *decoder) failBad(f *field, at pos, path, msg string) {
	f.bad = true
	d.fail(at, path, msg)
}

// spend takes one step from the budget, reporting once when it runs out.
func (d *decoder) spend(at pos, path string) bool {
	*d.budget--
	if *d.budget == -1 {
		d.fail(at, path, "too many nodes (aliases expanding into each other?); giving up")
	}
	return *d.budget >= 0
}

func (d *decoder) root(n *yaml.Node, v reflect.Value) {
	at := pos{n.Line, n.Column}
	f := d.meta.set(d.file, "", at)
	d.value(n, v, "", at, f)
}

// deref follows an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag
}

// value decodes n into v. path names v; at is where its key (or list item)
// is written, which is where its errors are reported; f is its record.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, at pos, f *field) {
	if !d.spend(at, path) {
		f.bad = true
		return
	}
	n = deref(n)
	if n.Kind == yaml.AliasNode { // an anchor that never resolved
		d.failBad(f, at, path, "unresolved alias")
		return
	}
	t := v.Type()
	if isNull(n) {
		f.null = true
		v.Set(reflect.Zero(t))
		return
	}
	if t == durationType {
		d.duration(n, v, path, at, f)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		e := reflect.New(t.Elem())
		d.value(n, e.Elem(), path, at, f)
		v.Set(e)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.failBad(f, at, path, "expected a mapping (keys: "+strings.Join(infoOf(t).keys, ", ")+"), got "+describe(n))
			return
		}
		d.mapping(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			msg := "expected a list, got " + describe(n)
			if n.Kind == yaml.ScalarNode && !strings.ContainsAny(n.Value, "$\n[]{},:#") && len(n.Value) <= 40 {
				msg += fmt.Sprintf(" (write [%s] for a list of one)", n.Value)
			}
			d.failBad(f, at, path, msg)
			return
		}
		if len(n.Content) == 0 {
			v.Set(reflect.Zero(t))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ip := indexPath(path, i)
			iat := pos{item.Line, item.Column}
			d.value(item, s.Index(i), ip, iat, d.meta.set(d.file, ip, iat))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode || t.Key().Kind() != reflect.String {
			d.failBad(f, at, path, "expected a mapping, got "+describe(n))
			return
		}
		d.stringMap(n, v, path)
	default:
		if !scalarKind(t.Kind()) {
			// Only a schema field of a type this decoder does not know
			// gets here; TestSchemaDecodable catches that.
			d.failBad(f, at, path, "cannot be decoded into a "+t.String())
			return
		}
		d.scalar(n, v, path, at, f)
	}
}

func scalarKind(k reflect.Kind) bool {
	switch k {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// entry is one key: value of a mapping, or of one merged into it with <<.
type entry struct {
	key, val *yaml.Node
	merged   bool
}

// entries lists n's keys, then those merged in with << (earlier merges
// first), which explicit keys override.
func (d *decoder) entries(n *yaml.Node, path string, merged bool, seen map[*yaml.Node]bool, out []entry) []entry {
	if seen[n] {
		return out
	}
	seen[n] = true
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == mergeTag {
			merges = append(merges, k, val)
			continue
		}
		out = append(out, entry{key: k, val: val, merged: merged})
	}
	for i := 0; i < len(merges); i += 2 {
		k, val := merges[i], deref(merges[i+1])
		at := pos{k.Line, k.Column}
		switch val.Kind {
		case yaml.MappingNode:
			out = d.entries(val, path, true, seen, out)
			continue
		case yaml.SequenceNode:
			ok := true
			for _, item := range val.Content {
				if item = deref(item); item.Kind != yaml.MappingNode {
					ok = false
				}
			}
			if ok {
				for _, item := range val.Content {
					out = d.entries(deref(item), path, true, seen, out)
				}
				continue
			}
		}
		if !isNull(val) {
			d.fail(at, joinPath(path, "<<"), "a merge (<<) takes a mapping or a list of mappings, got "+describe(val))
		}
	}
	return out
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	si := infoOf(v.Type())
	seen := map[string]pos{}
	for _, e := range d.entries(n, path, false, map[*yaml.Node]bool{}, nil) {
		at := pos{e.key.Line, e.key.Column}
		k := deref(e.key)
		if k.Kind != yaml.ScalarNode {
			d.fail(at, path, "a key must be a string, got "+describe(k))
			continue
		}
		name := k.Value
		child := joinPath(path, name)
		if first, dup := seen[name]; dup {
			if !e.merged {
				d.fail(at, child, fmt.Sprintf("duplicate key (first at line %d column %d)", first.line, first.col))
			}
			continue
		}
		seen[name] = at
		i, ok := si.index[name]
		if !ok {
			d.fail(at, child, unknownKey(v.Type(), name, si.keys))
			continue
		}
		d.value(e.val, v.Field(i), child, at, d.meta.set(d.file, child, at))
	}
}

// stringMap decodes a mapping with free-form keys into a map[string]T.
func (d *decoder) stringMap(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	m := reflect.MakeMap(t)
	seen := map[string]pos{}
	for _, e := range d.entries(n, path, false, map[*yaml.Node]bool{}, nil) {
		at := pos{e.key.Line, e.key.Column}
		k := deref(e.key)
		if k.Kind != yaml.ScalarNode {
			d.fail(at, path, "a key must be a string, got "+describe(k))
			continue
		}
		child := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			if !e.merged {
				d.fail(at, child, fmt.Sprintf("duplicate key (first at line %d column %d)", first.line, first.col))
			}
			continue
		}
		seen[k.Value] = at
		elem := reflect.New(t.Elem()).Elem()
		d.value(e.val, elem, child, at, d.meta.set(d.file, child, at))
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), elem)
	}
	if m.Len() == 0 {
		m = reflect.Zero(t) // like an empty list: nothing written
	}
	v.Set(m)
}

func unknownKey(t reflect.Type, name string, keys []string) string {
	if t == rulesFileType && (name == "include" || name == "settings") {
		return fmt.Sprintf("unknown key %q: %s belongs in the main config file; an included file holds only rules", name, name)
	}
	msg := fmt.Sprintf("unknown key %q", name)
	if s := suggest(name, keys); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg + "; allowed keys: " + strings.Join(keys, ", ")
}

// suggest returns the allowed key closest to name, if it is close enough
// to be a typo.
func suggest(name string, keys []string) string {
	best, bestD := "", 3
	lname := strings.ToLower(name)
	for _, k := range keys {
		if dist := editDistance(lname, k); dist < bestD && dist <= len(k)/2 {
			best, bestD = k, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c = 1 + min(prev[j-1], prev[j], cur[j-1])
			}
			cur[j] = c
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// text returns a scalar's value with ${NAME}s expanded, reporting problems.
func (d *decoder) text(n *yaml.Node, path string, at pos, f *field) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.failBad(f, at, path, "expected a single value, got "+describe(n))
		return "", false
	}
	s, vars, errs := expand(n.Value, d.getenv)
	f.vars = vars
	for _, e := range errs {
		if name, ok := unsetName(e); ok {
			f.unset = append(f.unset, name)
		}
	}
	for _, e := range errs {
		d.failBad(f, at, path, e)
	}
	return s, len(errs) == 0
}

// got describes a value that was not what was expected, naming the
// variables it came from rather than showing it.
func got(s string, f *field) string {
	if len(f.vars) > 0 {
		return fromVars(f.vars)
	}
	return quote(s)
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string, at pos, f *field) {
	s, ok := d.text(n, path, at, f)
	if !ok {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, v.Type().Bits())
		if err != nil {
			d.failBad(f, at, path, intError(s, f, err, "an integer"))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, err := strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, v.Type().Bits())
		if err != nil {
			d.failBad(f, at, path, intError(s, f, err, "a whole number (0 or more)"))
			return
		}
		v.SetUint(i)
	case reflect.Float32, reflect.Float64:
		x, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil || math.IsInf(x, 0) || math.IsNaN(x) || strings.ContainsAny(s, "xXpP_") {
			d.failBad(f, at, path, "expected a number, got "+got(s, f))
			return
		}
		v.SetFloat(x)
	case reflect.Bool:
		switch s {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			d.failBad(f, at, path, "expected true or false, got "+got(s, f))
		}
	}
}

func intError(s string, f *field, err error, what string) string {
	if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		return "integer " + got(s, f) + " is out of range"
	}
	return "expected " + what + ", got " + got(s, f)
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string, at pos, f *field) {
	s, ok := d.text(n, path, at, f)
	if !ok {
		return
	}
	x, err := ParseDuration(s)
	if err != nil {
		d.failBad(f, at, path, "duration "+got(s, f)+" "+err.Error())
		return
	}
	v.Set(reflect.ValueOf(Duration{Duration: x, Set: true}))
}

// describe names what a node is, for "expected X, got Y".
func describe(n *yaml.Node) string {
	n = deref(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case nullTag:
			return "null"
		case "!!timestamp":
			return "a timestamp"
		}
		return "a value"
	}
	return "nothing"
}

// expand replaces ${NAME} and ${NAME:-default} in s with getenv(NAME) (or
// the default when that is empty) and $$ with $; any other $ is kept. It
// returns the names it expanded and a message for each problem: a variable
// that is unset with no default, a malformed reference. Messages name
// variables, never their values.
func expand(s string, getenv func(string) string) (string, []string, []string) {
	if !strings.Contains(s, "$") {
		return s, nil, nil
	}
	var b strings.Builder
	var vars, errs []string
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
			continue
		case '{':
		default:
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			errs = append(errs, "unterminated ${ (write $$ for a literal $)")
			break
		}
		ref := s[i+2 : i+2+end]
		i += 2 + end + 1
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validVarName(name) {
			errs = append(errs, fmt.Sprintf("invalid variable name %s in ${...} (write ${NAME} or ${NAME:-default} with NAME made of letters, digits and _; $$ for a literal $)", quote(name)))
			continue
		}
		if !containsString(vars, name) {
			vars = append(vars, name)
		}
		val := getenv(name)
		if val == "" {
			if !hasDef {
				errs = append(errs, fmt.Sprintf("environment variable %s is not set (write ${%s:-default} to give a default)", name, name))
				continue
			}
			val = def
		}
		b.WriteString(val)
	}
	return b.String(), vars, errs
}

// unsetName returns the variable an expand message says is not set.
func unsetName(msg string) (string, bool) {
	rest, ok := strings.CutPrefix(msg, "environment variable ")
	if !ok {
		return "", false
	}
	name, _, ok := strings.Cut(rest, " is not set")
	return name, ok
}

func validVarName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
