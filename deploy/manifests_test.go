package deploy

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// distBinary is the distribution that make build writes.
const distBinary = "../_build/otelcol-ebpf"

// objects is what one kustomization renders, decoded strictly.
type objects struct {
	namespaces          []corev1.Namespace
	serviceAccounts     []corev1.ServiceAccount
	configMaps          map[string]corev1.ConfigMap // by name before the hash suffix
	services            []corev1.Service
	clusterRoles        []rbacv1.ClusterRole
	clusterRoleBindings []rbacv1.ClusterRoleBinding
	daemonSets          []appsv1.DaemonSet
	deployments         []appsv1.Deployment
}

// render builds the kustomization in dir as kubectl apply -k does and
// decodes every object into its API type, refusing unknown fields.
func render(t *testing.T, dir string) objects {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	o := objects{configMaps: make(map[string]corev1.ConfigMap)}
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		var target any
		switch r.GetKind() {
		case "Namespace":
			target = &corev1.Namespace{}
		case "ServiceAccount":
			target = &corev1.ServiceAccount{}
		case "ConfigMap":
			target = &corev1.ConfigMap{}
		case "Service":
			target = &corev1.Service{}
		case "ClusterRole":
			target = &rbacv1.ClusterRole{}
		case "ClusterRoleBinding":
			target = &rbacv1.ClusterRoleBinding{}
		case "DaemonSet":
			target = &appsv1.DaemonSet{}
		case "Deployment":
			target = &appsv1.Deployment{}
		default:
			t.Fatalf("%s: unexpected kind %s", dir, r.GetKind())
		}
		if err := yaml.UnmarshalStrict(b, target); err != nil {
			t.Fatalf("%s %s: %v", r.GetKind(), r.GetName(), err)
		}
		switch v := target.(type) {
		case *corev1.Namespace:
			o.namespaces = append(o.namespaces, *v)
		case *corev1.ServiceAccount:
			o.serviceAccounts = append(o.serviceAccounts, *v)
		case *corev1.ConfigMap:
			// Generated: the name ends in -<hash of the data>.
			base, hash, _ := strings.Cut(v.Name[max(0, len(v.Name)-11):], "-")
			if base != "" || len(hash) != 10 {
				t.Fatalf("ConfigMap %s is not generated with a hash suffix", v.Name)
			}
			o.configMaps[v.Name[:len(v.Name)-11]] = *v
		case *corev1.Service:
			o.services = append(o.services, *v)
		case *rbacv1.ClusterRole:
			o.clusterRoles = append(o.clusterRoles, *v)
		case *rbacv1.ClusterRoleBinding:
			o.clusterRoleBindings = append(o.clusterRoleBindings, *v)
		case *appsv1.DaemonSet:
			o.daemonSets = append(o.daemonSets, *v)
		case *appsv1.Deployment:
			o.deployments = append(o.deployments, *v)
		}
	}
	return o
}

func TestAgentManifests(t *testing.T) {
	o := render(t, "kubernetes")
	if len(o.namespaces) != 1 || len(o.serviceAccounts) != 1 || len(o.clusterRoles) != 1 ||
		len(o.clusterRoleBindings) != 1 || len(o.daemonSets) != 1 || len(o.deployments) != 0 {
		t.Fatalf("want one namespace, service account, cluster role, binding and DaemonSet; got %+v", o)
	}
	ns := o.namespaces[0].Name
	ds := o.daemonSets[0]
	pod := ds.Spec.Template.Spec
	sa := o.serviceAccounts[0]

	t.Run("namespace", func(t *testing.T) {
		for _, obj := range []string{ds.Namespace, sa.Namespace} {
			if obj != ns {
				t.Errorf("object in namespace %q, want %q", obj, ns)
			}
		}
	})

	t.Run("rbac", func(t *testing.T) {
		want := []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: []string{"get", "list", "watch"},
		}}
		if got := o.clusterRoles[0].Rules; !reflect.DeepEqual(got, want) {
			t.Errorf("ClusterRole rules = %+v, want %+v", got, want)
		}
		b := o.clusterRoleBindings[0]
		if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != o.clusterRoles[0].Name {
			t.Errorf("binding refers to %+v", b.RoleRef)
		}
		wantSubject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: ns}}
		if !reflect.DeepEqual(b.Subjects, wantSubject) {
			t.Errorf("binding subjects = %+v, want %+v", b.Subjects, wantSubject)
		}
		if pod.ServiceAccountName != sa.Name {
			t.Errorf("DaemonSet runs as %q, want %q", pod.ServiceAccountName, sa.Name)
		}
	})

	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]

	t.Run("pod", func(t *testing.T) {
		if !pod.HostPID {
			t.Error("hostPID is not set")
		}
		if pod.HostNetwork || pod.HostIPC {
			t.Error("hostNetwork or hostIPC is set")
		}
		if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
			return tl.Key == "" && tl.Operator == corev1.TolerationOpExists && tl.Effect == ""
		}) {
			t.Errorf("no toleration of every taint: %+v", pod.Tolerations)
		}
		node := envVar(t, c, "K8S_NODE_NAME")
		if node.ValueFrom == nil || node.ValueFrom.FieldRef == nil || node.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("K8S_NODE_NAME is not spec.nodeName from the downward API: %+v", node)
		}
		want := corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("200Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
		}
		if !equalResources(c.Resources, want) {
			t.Errorf("resources = %+v, want %+v", c.Resources, want)
		}
		for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/" || p.HTTPGet.Port.String() != "health" {
				t.Errorf("%s probe is not GET / on the health port: %+v", name, p)
			}
		}
		if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "health" && p.ContainerPort == 13133 }) {
			t.Errorf("no health port 13133: %+v", c.Ports)
		}
	})

	t.Run("security context", func(t *testing.T) {
		checkAgentSecurityContext(t, c.SecurityContext)
		if psc := pod.SecurityContext; psc != nil && !reflect.DeepEqual(*psc, corev1.PodSecurityContext{}) {
			t.Errorf("pod security context is set (%+v); the container's is the one to read", psc)
		}
	})

	t.Run("volumes", func(t *testing.T) {
		wantHost := map[string]string{"btf": "/sys/kernel/btf", "cgroup": "/sys/fs/cgroup"}
		gotHost := map[string]string{}
		for _, v := range pod.Volumes {
			switch {
			case v.HostPath != nil:
				gotHost[v.Name] = v.HostPath.Path
				if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectory {
					t.Errorf("hostPath %s is not of type Directory", v.Name)
				}
			case v.ConfigMap != nil && v.Name == "config":
				if !strings.HasPrefix(v.ConfigMap.Name, "otelcol-ebpf-agent-") {
					t.Errorf("config volume refers to %q, not the generated agent ConfigMap", v.ConfigMap.Name)
				}
			default:
				t.Errorf("unexpected volume %+v", v)
			}
		}
		if !reflect.DeepEqual(gotHost, wantHost) {
			t.Errorf("hostPath volumes = %v, want %v", gotHost, wantHost)
		}
		for _, m := range c.VolumeMounts {
			if !m.ReadOnly {
				t.Errorf("volume mount %s at %s is writable", m.Name, m.MountPath)
			}
		}
		cgroupRoot := envVar(t, c, "CGROUP_ROOT").Value
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == "cgroup" && (cgroupRoot == m.MountPath || strings.HasPrefix(cgroupRoot, m.MountPath+"/"))
		}) {
			t.Errorf("CGROUP_ROOT %q is not inside the host cgroup mount", cgroupRoot)
		}
	})

	t.Run("collector config", func(t *testing.T) {
		cm, ok := o.configMaps["otelcol-ebpf-agent"]
		if !ok || len(cm.Data) != 1 {
			t.Fatalf("want the agent ConfigMap with one key, got %+v", cm)
		}
		var mountPath string
		for _, m := range c.VolumeMounts {
			if m.Name == "config" {
				mountPath = m.MountPath
			}
		}
		for key, cfg := range cm.Data {
			if want := "--config=" + mountPath + "/" + key; !slices.Contains(c.Args, want) {
				t.Errorf("container args %v do not load %s", c.Args, want)
			}
			validate(t, cfg, containerEnv(t, c, o.configMaps))

			var got struct {
				Processors map[string]any            `json:"processors"`
				Service    struct{ Pipelines any }   `json:"service"`
				Exporters  map[string]map[string]any `json:"exporters"`
			}
			if err := yaml.Unmarshal([]byte(cfg), &got); err != nil {
				t.Fatal(err)
			}
			proven := readYAML(t, "../receiver/ebpfreceiver/testdata/k8s/collector.yaml")
			if want := proven["processors"].(map[string]any)["k8s_attributes"]; !reflect.DeepEqual(got.Processors["k8s_attributes"], want) {
				t.Errorf("k8s_attributes differs from the one proven in receiver/ebpfreceiver/testdata/k8s/collector.yaml:\n got %v\nwant %v",
					got.Processors["k8s_attributes"], want)
			}
			pipeline := map[string]any{
				"receivers":  []any{"ebpf"},
				"processors": []any{"memory_limiter", "k8s_attributes", "batch"},
				"exporters":  []any{"otlp_grpc"},
			}
			// Every signal of the receiver, k8s_attributes included: the log
			// records carry the same container.id and k8s.pod.uid. Traces
			// skip batch, which would hold the failed and slow spans.
			traces := map[string]any{
				"receivers":  []any{"ebpf"},
				"processors": []any{"memory_limiter", "k8s_attributes"},
				"exporters":  []any{"otlp_grpc"},
			}
			if want := map[string]any{"metrics": pipeline, "traces": traces, "logs": pipeline}; !reflect.DeepEqual(got.Service.Pipelines, want) {
				t.Errorf("pipelines = %v, want %v", got.Service.Pipelines, want)
			}
			if ep := got.Exporters["otlp_grpc"]["endpoint"]; ep != "${env:OTLP_ENDPOINT}" {
				t.Errorf("otlp_grpc endpoint = %v, want ${env:OTLP_ENDPOINT}", ep)
			}
			// As make bench-system measures it.
			if c := got.Exporters["otlp_grpc"]["compression"]; c != "snappy" {
				t.Errorf("otlp_grpc compression = %v, want snappy", c)
			}
		}
	})
}

// checkAgentSecurityContext asserts the agent's least privilege: not
// privileged, exactly CAP_BPF and CAP_PERFMON on top of nothing, no
// escalation, a read-only root file system.
func checkAgentSecurityContext(t *testing.T, sc *corev1.SecurityContext) {
	t.Helper()
	if sc == nil {
		t.Fatal("no security context")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: true")
	}
	if sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	if want := []corev1.Capability{"BPF", "PERFMON"}; !reflect.DeepEqual(sc.Capabilities.Add, want) {
		t.Errorf("capabilities add %v, want exactly %v", sc.Capabilities.Add, want)
	}
	if want := []corev1.Capability{"ALL"}; !reflect.DeepEqual(sc.Capabilities.Drop, want) {
		t.Errorf("capabilities drop %v, want %v", sc.Capabilities.Drop, want)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("root file system is writable")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("privilege escalation is allowed")
	}
}

func TestGatewayManifests(t *testing.T) {
	o := render(t, "kubernetes/gateway")
	if len(o.deployments) != 1 || len(o.services) != 1 || len(o.daemonSets) != 0 || len(o.clusterRoles) != 0 {
		t.Fatalf("want one Deployment and one Service, got %+v", o)
	}
	d, svc := o.deployments[0], o.services[0]
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if pod.HostPID || pod.HostNetwork || (pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken) {
		t.Error("the gateway uses a host namespace or an API token")
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("the gateway may run as root")
	}
	if sc := c.SecurityContext; sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 ||
		!reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("gateway security context: %+v", sc)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("gateway mounts the host's %s", v.HostPath.Path)
		}
	}
	cm, ok := o.configMaps["otelcol-ebpf-gateway"]
	if !ok {
		t.Fatal("no gateway ConfigMap")
	}
	for _, cfg := range cm.Data {
		validate(t, cfg, containerEnv(t, c, o.configMaps))
	}

	// Every signal the agents send is received: the OTLP receiver refuses a
	// signal that no pipeline takes. Metrics go to Prometheus, traces and
	// logs to the backend.
	agent := render(t, "kubernetes")
	type pipelines struct {
		Service struct {
			Pipelines map[string]struct{ Receivers, Exporters []string }
		} `json:"service"`
	}
	var agentCfg, gatewayCfg pipelines
	for _, u := range []struct {
		cfg string
		to  *pipelines
	}{{agent.configMaps["otelcol-ebpf-agent"].Data["agent.yaml"], &agentCfg}, {cm.Data["gateway.yaml"], &gatewayCfg}} {
		if err := yaml.Unmarshal([]byte(u.cfg), u.to); err != nil {
			t.Fatal(err)
		}
	}
	wantExporter := map[string]string{"metrics": "prometheus", "traces": "otlp_grpc", "logs": "otlp_grpc"}
	for signal := range agentCfg.Service.Pipelines {
		p, ok := gatewayCfg.Service.Pipelines[signal]
		if !ok || !slices.Equal(p.Receivers, []string{"otlp"}) || !slices.Equal(p.Exporters, []string{wantExporter[signal]}) {
			t.Errorf("the agents send %s; the gateway's %s pipeline is %+v, want otlp to %s", signal, signal, p, wantExporter[signal])
		}
	}

	// The agents' default endpoint is this Service's OTLP port.
	endpoint := agent.configMaps["otelcol-ebpf-endpoint"].Data["OTLP_ENDPOINT"]
	var port int32
	for _, p := range svc.Spec.Ports {
		if p.Name == "otlp-grpc" {
			port = p.Port
		}
	}
	if want := fmt.Sprintf("%s.%s.svc:%d", svc.Name, svc.Namespace, port); endpoint != want {
		t.Errorf("agents export to %q, the gateway listens at %q", endpoint, want)
	}
}

// TestHelmValues checks that deploy/helm/values.yaml gives the chart's
// DaemonSet what deploy/kubernetes gives its own.
func TestHelmValues(t *testing.T) {
	b, err := os.ReadFile("helm/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Mode            string                           `json:"mode"`
		Image           struct{ Repository, Tag string } `json:"image"`
		Command         struct{ Name string }            `json:"command"`
		AlternateConfig map[string]any                   `json:"alternateConfig"`
		ExtraEnvs       []corev1.EnvVar                  `json:"extraEnvs"`
		HostPID         bool                             `json:"hostPID"`
		Tolerations     []corev1.Toleration              `json:"tolerations"`
		SecurityContext *corev1.SecurityContext          `json:"securityContext"`
		ExtraVolumes    []corev1.Volume                  `json:"extraVolumes"`
		ExtraMounts     []corev1.VolumeMount             `json:"extraVolumeMounts"`
		Resources       corev1.ResourceRequirements      `json:"resources"`
		StartupProbe    *corev1.Probe                    `json:"startupProbe"`
		ClusterRole     struct {
			Create bool                `json:"create"`
			Rules  []rbacv1.PolicyRule `json:"rules"`
		} `json:"clusterRole"`
		Ports map[string]struct {
			Enabled bool `json:"enabled"`
		} `json:"ports"`
	}
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatal(err)
	}
	o := render(t, "kubernetes")
	pod := o.daemonSets[0].Spec.Template.Spec
	c := pod.Containers[0]

	if v.Mode != "daemonset" || v.Image.Repository == "" || v.Command.Name != "otelcol-ebpf" {
		t.Errorf("mode %q, image %+v, command %q", v.Mode, v.Image, v.Command.Name)
	}
	checkAgentSecurityContext(t, v.SecurityContext)
	if !reflect.DeepEqual(v.SecurityContext, c.SecurityContext) {
		t.Errorf("security context differs:\n helm %+v\n kustomize %+v", v.SecurityContext, c.SecurityContext)
	}
	var agent map[string]any
	if err := yaml.Unmarshal([]byte(o.configMaps["otelcol-ebpf-agent"].Data["agent.yaml"]), &agent); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v.AlternateConfig, agent) {
		t.Error("alternateConfig differs from deploy/kubernetes/agent.yaml")
	}
	if !v.HostPID || !reflect.DeepEqual(v.Tolerations, pod.Tolerations) {
		t.Errorf("hostPID %v, tolerations %+v", v.HostPID, v.Tolerations)
	}
	var hostVolumes []corev1.Volume
	var hostMounts []corev1.VolumeMount
	for _, vol := range pod.Volumes {
		if vol.HostPath != nil {
			hostVolumes = append(hostVolumes, vol)
		}
	}
	for _, m := range c.VolumeMounts {
		if m.Name != "config" {
			hostMounts = append(hostMounts, m)
		}
	}
	if !reflect.DeepEqual(v.ExtraVolumes, hostVolumes) || !reflect.DeepEqual(v.ExtraMounts, hostMounts) {
		t.Errorf("volumes differ:\n helm %+v %+v\n kustomize %+v %+v", v.ExtraVolumes, v.ExtraMounts, hostVolumes, hostMounts)
	}
	if !equalResources(v.Resources, c.Resources) {
		t.Errorf("resources differ: helm %+v, kustomize %+v", v.Resources, c.Resources)
	}
	if v.StartupProbe == nil || c.StartupProbe == nil ||
		v.StartupProbe.PeriodSeconds*v.StartupProbe.FailureThreshold != c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold {
		t.Errorf("startup probe differs: helm %+v, kustomize %+v", v.StartupProbe, c.StartupProbe)
	}
	if !v.ClusterRole.Create || !reflect.DeepEqual(v.ClusterRole.Rules, o.clusterRoles[0].Rules) {
		t.Errorf("cluster role differs: helm %+v, kustomize %+v", v.ClusterRole, o.clusterRoles[0].Rules)
	}
	for name, p := range v.Ports {
		if p.Enabled {
			t.Errorf("port %s is enabled; the agent listens on nothing but its health check", name)
		}
	}

	// Every variable of the agent's config, as the DaemonSet sets it. The
	// chart sets MY_POD_IP and GOMEMLIMIT itself.
	helmEnv := map[string]corev1.EnvVar{}
	for _, e := range v.ExtraEnvs {
		helmEnv[e.Name] = e
	}
	for name, value := range containerEnv(t, c, o.configMaps) {
		if name == "MY_POD_IP" || name == "GOMEMLIMIT" {
			continue
		}
		e, ok := helmEnv[name]
		switch {
		case !ok:
			t.Errorf("extraEnvs lacks %s", name)
		case e.ValueFrom != nil:
			if k := envVar(t, c, name); !reflect.DeepEqual(e.ValueFrom, k.ValueFrom) {
				t.Errorf("%s: helm %+v, kustomize %+v", name, e.ValueFrom, k.ValueFrom)
			}
		case e.Value != value:
			t.Errorf("%s: helm %q, kustomize %q", name, e.Value, value)
		}
	}
}

// TestDockerfileVersions checks that deploy/Dockerfile builds with go.mod's
// Go and the Makefile's ocb, and runs the binary the manifests name.
// The image tags name the distribution's version, which builder-config.yaml
// sets.
func TestImageTagsMatchVersion(t *testing.T) {
	dist, _ := readYAML(t, "../builder-config.yaml")["dist"].(map[string]any)
	version, _ := dist["version"].(string)
	if version == "" {
		t.Fatal("builder-config.yaml sets no dist.version")
	}
	for _, path := range []string{"kubernetes/kustomization.yaml", "kubernetes/gateway/kustomization.yaml"} {
		images, _ := readYAML(t, path)["images"].([]any)
		if len(images) != 1 {
			t.Fatalf("%s: want one image, got %v", path, images)
		}
		if tag := images[0].(map[string]any)["newTag"]; tag != version {
			t.Errorf("%s: image tag %v, want the distribution's version %s", path, tag, version)
		}
	}
	image, _ := readYAML(t, "helm/values.yaml")["image"].(map[string]any)
	if tag := image["tag"]; tag != version {
		t.Errorf("helm/values.yaml: image tag %v, want %s", tag, version)
	}
}

// The top README's component list names exactly the components that
// builder-config.yaml builds in, by the name each one registers.
func TestREADMEComponents(t *testing.T) {
	// The type each module of the manifest registers under.
	names := map[string]string{
		"receiver/ebpfreceiver":  "ebpf",
		"otlpreceiver":           "otlp",
		"k8sattributesprocessor": "k8s_attributes",
		"batchprocessor":         "batch",
		"memorylimiterprocessor": "memory_limiter",
		"debugexporter":          "debug",
		"otlpexporter":           "otlp_grpc",
		"otlphttpexporter":       "otlp_http",
		"fileexporter":           "file",
		"prometheusexporter":     "prometheus",
		"healthcheckextension":   "health_check",
		"pprofextension":         "pprof",
	}
	manifest := readYAML(t, "../builder-config.yaml")
	want := map[string][]string{}
	for _, kind := range []string{"receivers", "processors", "exporters", "extensions"} {
		entries, _ := manifest[kind].([]any)
		for _, e := range entries {
			m := e.(map[string]any)
			mod, _ := m["import"].(string)
			if mod == "" {
				mod, _, _ = strings.Cut(m["gomod"].(string), " ")
			}
			name := ""
			for suffix, n := range names {
				if strings.HasSuffix(mod, "/"+suffix) {
					name = n
				}
			}
			if name == "" {
				t.Fatalf("builder-config.yaml: %s: add its component name to this test", mod)
			}
			want[kind] = append(want[kind], "`"+name+"`")
		}
	}
	readme := readFile(t, "../README.md")
	_, list, _ := strings.Cut(readme, "<!-- components -->\n")
	list, _, _ = strings.Cut(list, "<!-- /components -->")
	got := map[string][]string{}
	for line := range strings.Lines(list) {
		kind, items, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "- "), ": ")
		if ok {
			got[kind] = strings.Split(items, ", ")
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("README components %v, builder-config.yaml builds %v", got, want)
	}
}

func TestDockerfileVersions(t *testing.T) {
	docker := readFile(t, "Dockerfile")
	goVersion := field(t, readFile(t, "../go.mod"), "go ")
	ocbVersion := field(t, readFile(t, "../Makefile"), "OCB_VERSION  :=")
	if want := "FROM golang:" + goVersion + " AS build"; !strings.Contains(docker, want+"\n") {
		t.Errorf("Dockerfile lacks %q (go.mod says go %s)", want, goVersion)
	}
	if want := "ARG OCB_VERSION=" + ocbVersion; !strings.Contains(docker, want+"\n") {
		t.Errorf("Dockerfile lacks %q (the Makefile's OCB_VERSION)", want)
	}
	for _, want := range []string{"CGO_ENABLED=0", "cp dist/go.mod dist/go.sum _build/", "--config builder-config.yaml --skip-get-modules",
		`ENTRYPOINT ["/otelcol-ebpf"]`} {
		if !strings.Contains(docker, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// validate runs the distribution's validate command on a collector config
// with the given environment. validate checks that cgroup_root is a cgroup
// v2 mount on the machine it runs on, so CGROUP_ROOT, a path inside the
// pod, is pointed at this machine's mount instead; the manifest test checks
// the pod's path itself.
func validate(t *testing.T, cfg string, env map[string]string) {
	t.Helper()
	if _, ok := env["CGROUP_ROOT"]; ok {
		env = maps.Clone(env)
		env["CGROUP_ROOT"] = cgroup2Mount(t)
	}
	if _, err := os.Stat(distBinary); err != nil {
		t.Fatalf("%v: run make build first", err)
	}
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(distBinary, "validate", "--config", file)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("otelcol-ebpf validate: %v\n%s", err, out)
	}
}

// containerEnv resolves the container's environment as the kubelet would:
// literal values, ConfigMap keys, and placeholders for the downward API.
func containerEnv(t *testing.T, c corev1.Container, configMaps map[string]corev1.ConfigMap) map[string]string {
	t.Helper()
	byName := map[string]corev1.ConfigMap{}
	for _, cm := range configMaps {
		byName[cm.Name] = cm
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = map[string]string{"spec.nodeName": "node-1", "status.podIP": "10.0.0.1"}[e.ValueFrom.FieldRef.FieldPath]
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, ok := byName[ref.Name]
			if !ok {
				t.Fatalf("%s refers to ConfigMap %s, which the kustomization does not make", e.Name, ref.Name)
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				t.Fatalf("%s refers to key %s missing from ConfigMap %s", e.Name, ref.Key, ref.Name)
			}
			env[e.Name] = v
		default:
			t.Fatalf("unexpected source of %s: %+v", e.Name, e.ValueFrom)
		}
	}
	return env
}

func envVar(t *testing.T, c corev1.Container, name string) corev1.EnvVar {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("container %s has no %s", c.Name, name)
	return corev1.EnvVar{}
}

func equalResources(a, b corev1.ResourceRequirements) bool {
	eq := func(x, y corev1.ResourceList) bool {
		if len(x) != len(y) {
			return false
		}
		for k, q := range x {
			if r, ok := y[k]; !ok || q.Cmp(r) != 0 {
				return false
			}
		}
		return true
	}
	return eq(a.Requests, b.Requests) && eq(a.Limits, b.Limits)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(readFile(t, path)), &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// field returns the rest of the first line that starts with prefix.
func field(t *testing.T, text, prefix string) string {
	t.Helper()
	for line := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("no line starting with %q", prefix)
	return ""
}
