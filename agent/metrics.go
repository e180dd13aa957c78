package agent

import (
	"github.com/armorhost/kubearmor/feeder"
)

// pipelineMetrics adds the agent's own counters to the feeder's metrics.
func (a *Agent) pipelineMetrics(m *feeder.MetricsWriter) {
	if a.pipe == nil {
		return
	}
	m.Family("kubearmor_pipeline_events_total", "counter", "Kernel events the pipeline handled.")
	m.Sample("kubearmor_pipeline_events_total", float64(a.pipe.handled.Load()))
	m.Family("kubearmor_pipeline_dropped_total", "counter", "Kernel events dropped because the pipeline queue was full.")
	m.Sample("kubearmor_pipeline_dropped_total", float64(a.pipe.dropped.Load()))
	st := a.Status()
	m.Family("kubearmor_rules", "gauge", "Rules compiled from the policies in force.")
	m.Sample("kubearmor_rules", float64(st.Rules))
	m.Family("kubearmor_rules_unenforced", "gauge", "Rules the active enforcer cannot enforce.")
	m.Sample("kubearmor_rules_unenforced", float64(len(st.Unenforced)))
	m.Family("kubearmor_policy_files_rejected", "gauge", "Policy files whose current content is rejected.")
	m.Sample("kubearmor_policy_files_rejected", float64(st.BadFiles))
}
