package main

import "testing"

// jobOf reads systemctl list-jobs --no-legend --plain lines (columns JOB
// UNIT TYPE STATE); the lines here are written by hand in that format.
func TestJobOf(t *testing.T) {
	for _, tc := range []struct{ out, unit, want string }{
		{"1234 kubearmor.service restart running\n", "kubearmor.service", "restart"},
		{"77 other.service start waiting\n1235 kubearmor.service stop running\n", "kubearmor.service", "stop"},
		{"77 other.service start waiting\n", "kubearmor.service", ""},
		{"", "kubearmor.service", ""},
		{"1 kubearmor.service.d stop running\n", "kubearmor.service", ""},
	} {
		if got := jobOf(tc.out, tc.unit); got != tc.want {
			t.Errorf("jobOf(%q, %q) = %q, want %q", tc.out, tc.unit, got, tc.want)
		}
	}
}
