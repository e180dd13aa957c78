package hostpolicy

import (
	"fmt"
	"hash/fnv"
	"strings"
	"testing"
)

// Compile is linear in the number of rules, identical or not: the ID
// allocator tries at most a few IDs per rule. The linear probing it replaced
// tried about n²/2 for n identical rules (5·10⁹ for 100,000), so a bound of
// 2n separates the two by four orders of magnitude without timing anything.
func TestCompileIsLinear(t *testing.T) {
	for _, tc := range []struct {
		name string
		ps   []*Policy
	}{
		{"100k identical", identicalPolicy(100_000)},
		{"100k distinct", distinctPolicies(100_000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := newIDAllocator()
			rs := compileWith(tc.ps, Options{Host: "h"}, ids)
			n := len(rs.Rules)
			if n != 100_000 || CountRules(tc.ps, Options{Host: "h"}) != n {
				t.Fatalf("%d rules", n)
			}
			if ids.probes > 2*n {
				t.Fatalf("%d IDs tried for %d rules: not linear", ids.probes, n)
			}
			seen := make(map[uint32]bool, n)
			for i := range rs.Rules {
				id := rs.Rules[i].ID
				if id == 0 || seen[id] {
					t.Fatalf("rule %d: ID %d is zero or given twice", i, id)
				}
				seen[id] = true
				if r, ok := rs.Rule(id); !ok || r != &rs.Rules[i] {
					t.Fatalf("rule %d not found by its ID", i)
				}
			}
		})
	}
	// Memory is linear too: the rules slice is allocated once at its size.
	ps := identicalPolicy(10_000)
	small := testing.AllocsPerRun(3, func() { Compile(ps[:1], Options{Host: "h"}) })
	ps = identicalPolicy(100_000)
	large := testing.AllocsPerRun(3, func() { Compile(ps, Options{Host: "h"}) })
	if large > 10*small+100 {
		t.Fatalf("allocations: %v for 10k rules, %v for 100k", small, large)
	}
}

// Identical rules keep their IDs across recompiles, and when an unrelated
// policy or rule is added; a rule's ID is its content hash when that is free.
func TestIdenticalRulesKeepTheirIDs(t *testing.T) {
	doc := aliasPolicy("test-policy", 3, 4)
	rs := compileOne(t, doc)
	if len(rs.Rules) != 12 {
		t.Fatalf("%d rules", len(rs.Rules))
	}
	if rs.Rules[0].ID != ruleHash(rs.Rules[0]) {
		t.Fatal("the first of identical rules has its content hash as ID")
	}
	again := compileOne(t, doc)
	other := strings.Replace(wrap("  file:\n    matchPaths:\n    - path: /etc/shadow\n      fromSource:\n      - path: /usr/bin/app\n"), "test-policy", "aaa-first", 1)
	withOther := Compile(append(mustParse(t, other), mustParse(t, doc)...), Options{Host: "node-1"})
	more := compileOne(t, strings.Replace(doc, "]}, *p", "]}, {path: /etc/other}, *p", 1))
	for i, r := range rs.Rules {
		if again.Rules[i].ID != r.ID {
			t.Fatalf("rule %d: ID %d, then %d", i, r.ID, again.Rules[i].ID)
		}
		if got, ok := withOther.Rule(r.ID); !ok || got.Policy != "test-policy" {
			t.Fatalf("rule %d lost its ID %d when another policy was added", i, r.ID)
		}
		if got, ok := more.Rule(r.ID); !ok || got.Value != r.Value || got.Source != r.Source {
			t.Fatalf("rule %d lost its ID %d when a rule was added", i, r.ID)
		}
	}
}

// Crafted collisions (every rehash taken) fall back to a free ID, still in
// constant time per rule.
func TestIDCollisionsFallBack(t *testing.T) {
	rs := &RuleSet{byID: map[uint32]int{}, ctrByID: map[uint32]int{}}
	a := newIDAllocator()
	const h = 12345
	rs.byID[h] = 0
	for attempt := uint32(0); attempt < maxIDAttempts; attempt++ {
		rs.ctrByID[mixID(h, 1, attempt)] = 0
	}
	rs.byID[^uint32(0)] = 0
	id := a.next(h, rs)
	if id != ^uint32(0)-1 || rs.taken(id) {
		t.Fatalf("fallback ID %#x", id)
	}
	rs.byID[id] = 0
	if id2 := a.next(h, rs); id2 == 0 || rs.taken(id2) {
		t.Fatalf("second ID %#x", id2)
	}
	if got := a.next(0, rs); got == 0 || rs.taken(got) {
		t.Fatal("hash 0 must not be used: ID 0 is the default posture")
	}
}

// ruleHash is the hash it was when IDs were first made, so the IDs of
// unchanged rules survive an upgrade of the agent.
func TestRuleHashUnchanged(t *testing.T) {
	old := func(r Rule) uint32 {
		h := fnv.New32a()
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%s\x00%t%t%t%t\x00%s\x00%t%t\x00%s\x00%t\x00%s\x00%s",
			r.Policy, r.Category, r.Match, r.Value, r.Recursive, r.ReadOnly, r.OwnerOnly, r.TTYOnly,
			r.Source, r.SourceIsDir, r.SourceRecursive, r.SyscallPath, r.SyscallRecursive, r.Action,
			strings.Join(r.AllowedArgs, "\x00"))
		return h.Sum32()
	}
	rules := []Rule{{}, {Policy: "p", Category: CategoryFile, Match: MatchPath, Value: "/etc/shadow", Action: ActionBlock},
		{Policy: "p", Category: CategoryProcess, Match: MatchDirectory, Value: "/usr/", Recursive: true, OwnerOnly: true,
			TTYOnly: true, Source: "/bin/", SourceIsDir: true, SourceRecursive: true, AllowedArgs: []string{"-a", "", "b"}},
		{Policy: strings.Repeat("n", 250), Category: CategorySyscall, Match: MatchSyscall, Value: "unlink",
			SyscallPath: "/" + strings.Repeat("x", 254), SyscallRecursive: true, ReadOnly: true, Source: "/" + strings.Repeat("s", 254)}}
	rules = append(rules, compileOne(t, aliasPolicy("test-policy", 2, 2)+"  syscalls:\n    matchPaths:\n    - path: /tmp/\n      syscall: [unlink]\n").Rules...)
	for i, r := range rules {
		if got, want := ruleHash(r), old(r); got != want {
			t.Errorf("rule %d: hash %#x, was %#x", i, got, want)
		}
	}
}
