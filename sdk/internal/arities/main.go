// Command arities writes the SDK's arities.go: tasks (Task0..Task6),
// actor constructors (Actor, Actor1..Actor6), methods
// (NewMethod0..NewMethod6) and generators (Generator0..Generator6,
// NewGenMethod0..NewGenMethod6) for each number of arguments, from one
// template each. Run it with `go generate ./sdk`.
package main

import (
	"bytes"
	"fmt"
	"go/format"
	"log"
	"os"
	"strings"
)

// maxArgs is the most arguments a task, constructor or method takes.
const maxArgs = 6

var letters = []string{"A", "B", "C", "D", "E", "F"}

// arity is what the templates need for n arguments.
type arity struct {
	n                  int
	types              []string // A, B, ...
	vars               []string // a, b, ...
	typeList, varList  string   // "A, B", "a, b"
	typeParams, params string   // "A, B, " (before R), "a A, b B"
	argParams          string   // "a Arg[A], b Arg[B]"
}

func newArity(n int) arity {
	a := arity{n: n, types: letters[:n]}
	for _, t := range a.types {
		a.vars = append(a.vars, strings.ToLower(t))
	}
	a.typeList = strings.Join(a.types, ", ")
	a.varList = strings.Join(a.vars, ", ")
	if n > 0 {
		a.typeParams = a.typeList + ", "
		ps := make([]string, n)
		as := make([]string, n)
		for i := range ps {
			ps[i] = a.vars[i] + " " + a.types[i]
			as[i] = a.vars[i] + " Arg[" + a.types[i] + "]"
		}
		a.params = strings.Join(ps, ", ")
		a.argParams = strings.Join(as, ", ")
	}
	return a
}

// decodeArgs writes the decoding of the raw arguments into a, b, ...
func (a arity) decodeArgs(b *bytes.Buffer) {
	for i, v := range a.vars {
		fmt.Fprintf(b, "\t\t%s, err := arg[%s](raw, %d)\n\t\tif err != nil {\n\t\t\treturn nil, err\n\t\t}\n", v, a.types[i], i)
	}
}

func (a arity) rawParam() string {
	if a.n == 0 {
		return "[][]byte"
	}
	return "raw [][]byte"
}

func (a arity) callArgs() string {
	if a.n == 0 {
		return ""
	}
	return ", " + a.varList
}

// refArgs is the argument list of a RemoteRefs call of the submit helper.
func (a arity) refArgs() string {
	return ", argValues(" + a.varList + ")..."
}

// remoteRefs writes the RemoteRefs method of typ, whose Remote takes
// recv (before the arguments) and returns ret through call.
func remoteRefs(b *bytes.Buffer, a arity, typ, recv, lead, ret, body string) {
	if a.n == 0 {
		return
	}
	b.WriteString("// RemoteRefs is Remote with each argument a Ref to a value of its type\n// (resolved before the call runs) or a value wrapped with Val.\n")
	params := a.argParams
	if lead != "" {
		params = lead + ", " + params
	}
	fmt.Fprintf(b, "func (%s %s) RemoteRefs(%s) %s {\n%s}\n\n", recv, typ, params, ret, body)
}

func count(n int) string {
	return []string{"no arguments", "one argument", "two arguments", "three arguments", "four arguments", "five arguments", "six arguments"}[n]
}

func task(b *bytes.Buffer, a arity) {
	fn := fmt.Sprintf("Func%d[%sR]", a.n, a.typeParams)
	fmt.Fprintf(b, "// Func%d is a registered task with %s.\n", a.n, count(a.n))
	fmt.Fprintf(b, "type Func%d[%sR any] struct {\n\td     *taskDef\n\textra []Option\n}\n\n", a.n, a.typeParams)
	fmt.Fprintf(b, "// Task%d registers fn as a task named name.\n", a.n)
	fmt.Fprintf(b, "func Task%d[%sR any](name string, fn func(%s) (R, error), opts ...Option) %s {\n", a.n, a.typeParams, a.typeList, fn)
	fmt.Fprintf(b, "\tregister(name, %d, func(%s) (any, error) {\n", a.n, a.rawParam())
	a.decodeArgs(b)
	fmt.Fprintf(b, "\t\treturn fn(%s)\n\t})\n", a.varList)
	fmt.Fprintf(b, "\treturn %s{d: &taskDef{name: name, opts: opts}}\n}\n\n", fn)
	fmt.Fprintf(b, "// Options returns the task with per-call options added.\n")
	fmt.Fprintf(b, "func (t %s) Options(opts ...Option) %s {\n\tt.extra = append(append([]Option(nil), t.extra...), opts...)\n\treturn t\n}\n\n", fn, fn)
	if a.n == 0 {
		b.WriteString("// Remote submits a call and returns a reference to its result at once.\n")
	} else {
		b.WriteString("// Remote submits a call with values of the task's argument types and\n// returns a reference to its result at once (RemoteRefs passes\n// references).\n")
	}
	fmt.Fprintf(b, "func (t %s) Remote(%s) Ref[R] {\n\treturn submitOne[R](t.d, nil, t.d.name, t.extra%s)\n}\n\n", fn, a.params, a.callArgs())
	remoteRefs(b, a, fn, "t", "", "Ref[R]", fmt.Sprintf("\treturn submitOne[R](t.d, nil, t.d.name, t.extra%s)\n", a.refArgs()))
}

func actor(b *bytes.Buffer, a arity) {
	name := fmt.Sprintf("Actor%d", a.n)
	typ := fmt.Sprintf("Class%d[S%s]", a.n, prefixed(a.typeList))
	if a.n == 0 {
		name = "Actor"
		b.WriteString("// Class0 is an actor class whose constructor takes no arguments.\n")
	} else {
		fmt.Fprintf(b, "// Class%d is an actor class whose constructor takes %s.\n", a.n, count(a.n))
	}
	fmt.Fprintf(b, "type Class%d[S%s any] struct{ c *ActorClass[S] }\n\n", a.n, prefixed(a.typeList))
	if a.n == 0 {
		b.WriteString("// Actor registers a class whose constructor takes no arguments.\n")
	} else {
		fmt.Fprintf(b, "// %s registers a class whose constructor takes %s.\n", name, count(a.n))
	}
	fmt.Fprintf(b, "func %s[S%s any](name string, ctor func(%s) (*S, error), opts ...Option) *%s {\n", name, prefixed(a.typeList), a.typeList, typ)
	fmt.Fprintf(b, "\tregister(name+abi.ActorInitSuffix, %d, func(%s) (any, error) {\n", a.n, a.rawParam())
	a.decodeArgs(b)
	fmt.Fprintf(b, "\t\ts, err := ctor(%s)\n\t\tif err != nil {\n\t\t\treturn nil, err\n\t\t}\n\t\tactor = s\n\t\treturn nil, nil\n\t})\n", a.varList)
	fmt.Fprintf(b, "\treturn &%s{c: &ActorClass[S]{name: name, opts: opts}}\n}\n\n", typ)
	fmt.Fprintf(b, "func (k *%s) actorClass() *ActorClass[S] { return k.c }\n\n", typ)
	b.WriteString("// Name returns the class name.\n")
	fmt.Fprintf(b, "func (k *%s) Name() string { return k.c.name }\n\n", typ)
	b.WriteString("// Options returns the class with per-actor options added (Name,\n// MaxRestarts, resources, Detached, ...).\n")
	fmt.Fprintf(b, "func (k *%s) Options(opts ...Option) *%s {\n\treturn &%s{c: k.c.with(opts)}\n}\n\n", typ, typ, typ)
	if a.n == 0 {
		b.WriteString("// Remote creates an actor and returns its handle at once; a creation\n// that fails surfaces as ErrActorDied on its method calls.\n")
	} else {
		b.WriteString("// Remote creates an actor with the constructor's arguments, of its\n// parameters' types (RemoteRefs passes references), and returns its\n// handle at once; a creation that fails surfaces as ErrActorDied on its\n// method calls.\n")
	}
	args := "nil"
	if a.n > 0 {
		args = "[]any{" + a.varList + "}"
	}
	fmt.Fprintf(b, "func (k *%s) Remote(%s) Handle[S] {\n\treturn k.c.create(%s)\n}\n\n", typ, a.params, args)
	if a.n > 0 {
		remoteRefs(b, a, "*"+typ, "k", "", "Handle[S]", fmt.Sprintf("\treturn k.c.create(argValues(%s))\n", a.varList))
	}
}

func prefixed(list string) string {
	if list == "" {
		return ""
	}
	return ", " + list
}

func method(b *bytes.Buffer, a arity) {
	typ := fmt.Sprintf("Method%d[S, %sR]", a.n, a.typeParams)
	if a.n == 0 {
		b.WriteString("// Method0 is an actor method without arguments.\n")
	} else {
		fmt.Fprintf(b, "// Method%d is an actor method with %s.\n", a.n, count(a.n))
	}
	fmt.Fprintf(b, "type Method%d[S, %sR any] struct {\n\td     *taskDef\n\textra []Option\n}\n\n", a.n, a.typeParams)
	fmt.Fprintf(b, "// NewMethod%d registers fn as method name of class c.\n", a.n)
	fmt.Fprintf(b, "func NewMethod%d[S, %sR any](class Class[S], name string, fn func(*S%s) (R, error)) %s {\n", a.n, a.typeParams, prefixed(a.typeList), typ)
	fmt.Fprintf(b, "\tc := class.actorClass()\n\tdef := methodDef(c.name, name)\n\tregister(def.name, %d, func(%s) (any, error) {\n", a.n, a.rawParam())
	b.WriteString("\t\ts, err := self[S](c.name)\n\t\tif err != nil {\n\t\t\treturn nil, err\n\t\t}\n")
	a.decodeArgs(b)
	fmt.Fprintf(b, "\t\treturn fn(s%s)\n\t})\n\treturn %s{d: def}\n}\n\n", a.callArgs(), typ)
	switch a.n {
	case 0:
		b.WriteString("// Remote calls the method on the actor; calls from one caller run in the\n// order they were made.\n")
	default:
		b.WriteString("// Remote calls the method with values of its argument types (RemoteRefs\n// passes references).\n")
	}
	params := "h Handle[S]"
	if a.n > 0 {
		params += ", " + a.params
	}
	fmt.Fprintf(b, "func (m %s) Remote(%s) Ref[R] {\n\tif h.err != nil {\n\t\treturn Ref[R]{err: h.err}\n\t}\n", typ, params)
	fmt.Fprintf(b, "\treturn submitOne[R](m.d, &h.id, m.d.name, m.extra%s)\n}\n\n", a.callArgs())
	remoteRefs(b, a, typ, "m", "h Handle[S]", "Ref[R]", fmt.Sprintf("\tif h.err != nil {\n\t\treturn Ref[R]{err: h.err}\n\t}\n\treturn submitOne[R](m.d, &h.id, m.d.name, m.extra%s)\n", a.refArgs()))
	if a.n == 0 {
		b.WriteString("// Options returns the method with per-call options added, as .options()\n// on a Ray method: Name (the call's name in output), TaskTimeout and\n// MaxTaskRetries apply to a method call.\n")
	} else {
		b.WriteString("// Options returns the method with per-call options added (see\n// Method0.Options).\n")
	}
	fmt.Fprintf(b, "func (m %s) Options(opts ...Option) %s {\n\tm.extra = append(append([]Option(nil), m.extra...), opts...)\n\treturn m\n}\n\n", typ, typ)
}

func generator(b *bytes.Buffer, a arity) {
	typ := fmt.Sprintf("Gen%d[%sT]", a.n, a.typeParams)
	fmt.Fprintf(b, "// Gen%d is a registered generator task with %s.\n", a.n, count(a.n))
	fmt.Fprintf(b, "type Gen%d[%sT any] struct {\n\td     *taskDef\n\textra []Option\n}\n\n", a.n, a.typeParams)
	fmt.Fprintf(b, "// Generator%d registers fn as a generator task named name: each value it\n// passes to yield becomes an object at once, which the caller's Stream\n// returns while fn goes on. yield returns an error when the value cannot\n// be stored or the call was cancelled; fn should then return it.\n", a.n)
	fmt.Fprintf(b, "func Generator%d[%sT any](name string, fn func(%sfunc(T) error) error, opts ...Option) %s {\n", a.n, a.typeParams, a.typeParams, typ)
	fmt.Fprintf(b, "\tregister(name, %d, func(%s) (any, error) {\n", a.n, a.rawParam())
	a.decodeArgs(b)
	fmt.Fprintf(b, "\t\treturn runGenerator(func(yield func(T) error) error { return fn(%syield) })\n\t})\n", a.typeParamsVars())
	fmt.Fprintf(b, "\treturn %s{d: &taskDef{name: name, opts: append([]Option{generatorOption}, opts...)}}\n}\n\n", typ)
	fmt.Fprintf(b, "// Options returns the generator with per-call options added.\n")
	fmt.Fprintf(b, "func (g %s) Options(opts ...Option) %s {\n\tg.extra = append(append([]Option(nil), g.extra...), opts...)\n\treturn g\n}\n\n", typ, typ)
	b.WriteString("// Remote starts the generator and returns its Stream at once.\n")
	fmt.Fprintf(b, "func (g %s) Remote(%s) *Stream[T] {\n\treturn submitStream[T](g.d, nil, g.d.name, g.extra%s)\n}\n\n", typ, a.params, a.callArgs())
	remoteRefs(b, a, typ, "g", "", "*Stream[T]", fmt.Sprintf("\treturn submitStream[T](g.d, nil, g.d.name, g.extra%s)\n", a.refArgs()))
}

func genMethod(b *bytes.Buffer, a arity) {
	typ := fmt.Sprintf("GenMethod%d[S, %sT]", a.n, a.typeParams)
	fmt.Fprintf(b, "// GenMethod%d is an actor method with %s that yields values.\n", a.n, count(a.n))
	fmt.Fprintf(b, "type GenMethod%d[S, %sT any] struct {\n\td     *taskDef\n\textra []Option\n}\n\n", a.n, a.typeParams)
	fmt.Fprintf(b, "// NewGenMethod%d registers fn as generator method name of class c (see\n// Generator0).\n", a.n)
	fmt.Fprintf(b, "func NewGenMethod%d[S, %sT any](class Class[S], name string, fn func(*S, %sfunc(T) error) error) %s {\n", a.n, a.typeParams, a.typeParams, typ)
	fmt.Fprintf(b, "\tc := class.actorClass()\n\tdef := methodDef(c.name, name)\n\tdef.opts = []Option{generatorOption}\n\tregister(def.name, %d, func(%s) (any, error) {\n", a.n, a.rawParam())
	b.WriteString("\t\ts, err := self[S](c.name)\n\t\tif err != nil {\n\t\t\treturn nil, err\n\t\t}\n")
	a.decodeArgs(b)
	fmt.Fprintf(b, "\t\treturn runGenerator(func(yield func(T) error) error { return fn(s, %syield) })\n\t})\n\treturn %s{d: def}\n}\n\n", a.typeParamsVars(), typ)
	params := "h Handle[S]"
	if a.n > 0 {
		params += ", " + a.params
	}
	b.WriteString("// Remote calls the method and returns its Stream at once.\n")
	fmt.Fprintf(b, "func (m %s) Remote(%s) *Stream[T] {\n\tif h.err != nil {\n\t\treturn &Stream[T]{end: Ref[int]{err: h.err}, count: -1}\n\t}\n", typ, params)
	fmt.Fprintf(b, "\treturn submitStream[T](m.d, &h.id, m.d.name, m.extra%s)\n}\n\n", a.callArgs())
	remoteRefs(b, a, typ, "m", "h Handle[S]", "*Stream[T]", fmt.Sprintf("\tif h.err != nil {\n\t\treturn &Stream[T]{end: Ref[int]{err: h.err}, count: -1}\n\t}\n\treturn submitStream[T](m.d, &h.id, m.d.name, m.extra%s)\n", a.refArgs()))
	b.WriteString("// Options returns the method with per-call options added.\n")
	fmt.Fprintf(b, "func (m %s) Options(opts ...Option) %s {\n\tm.extra = append(append([]Option(nil), m.extra...), opts...)\n\treturn m\n}\n\n", typ, typ)
}

// typeParamsVars is "a, b, " (before yield).
func (a arity) typeParamsVars() string {
	if a.n == 0 {
		return ""
	}
	return a.varList + ", "
}

func main() {
	var b bytes.Buffer
	b.WriteString("// Code generated by sdk/internal/arities; DO NOT EDIT.\n\npackage sdk\n\nimport \"github.com/wasmfabric/fabric/internal/abi\"\n\n")
	for n := 0; n <= maxArgs; n++ {
		task(&b, newArity(n))
	}
	for n := 0; n <= maxArgs; n++ {
		actor(&b, newArity(n))
	}
	for n := 0; n <= maxArgs; n++ {
		method(&b, newArity(n))
	}
	for n := 0; n <= maxArgs; n++ {
		generator(&b, newArity(n))
	}
	for n := 0; n <= maxArgs; n++ {
		genMethod(&b, newArity(n))
	}
	src, err := format.Source(b.Bytes())
	if err != nil {
		log.Fatalf("arities: %v\n%s", err, b.Bytes())
	}
	if err := os.WriteFile("arities.go", src, 0o644); err != nil {
		log.Fatal(err)
	}
}
