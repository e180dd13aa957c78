// Package packaging_test checks the files the packages install against the
// code that reads them, so a renamed config key or a stricter policy
// validator cannot ship a package whose own defaults the agent rejects.
package packaging_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/hostpolicy"
)

// The shipped /etc/kubearmor/kubearmor.yaml must load without errors or
// warnings and must say exactly what the built-in defaults are, because its
// header promises that deleting it changes nothing.
func TestShippedConfigIsTheDefaults(t *testing.T) {
	got, err := config.Load("kubearmor.yaml", true)
	if err != nil {
		t.Fatalf("shipped config does not load: %v", err)
	}
	if len(got.Warnings) > 0 {
		t.Fatalf("shipped config loads with warnings: %q", got.Warnings)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("shipped config does not validate: %v", err)
	}
	want := config.Defaults()
	got.Source, got.Warnings = "", nil
	want.Source, want.Warnings = "", nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("shipped config differs from the built-in defaults:\n got %+v\nwant %+v", *got, *want)
	}
}

// Every example policy under /usr/share/doc/kubearmor/examples must pass
// `kubearmor policy check` cleanly: users copy them verbatim.
func TestShippedExamplePoliciesAreClean(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example policies found (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			policies, diags := hostpolicy.Parse(f, data)
			if len(diags) > 0 {
				t.Fatalf("diagnostics: %v", diags)
			}
			if len(policies) == 0 {
				t.Fatal("no policy in file")
			}
		})
	}
}
