//go:build linux

package k8stest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// apiServerEnv overrides where the kube-apiserver binary is.
const apiServerEnv = "KUBE_APISERVER"

// startTimeout bounds how long etcd and kube-apiserver may take to be ready.
const startTimeout = 90 * time.Second

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Server is the API server's URL, https://127.0.0.1:<port>.
	Server string
	// Kubeconfig is the path of a kubeconfig file with admin rights.
	Kubeconfig string

	token string
	dir   string
}

// Start starts etcd and kube-apiserver on free loopback ports and waits
// until the API server is ready. Cleanup stops both and removes their data.
func Start(t testing.TB) *Cluster {
	t.Helper()
	apiserver := apiServerBinary(t)
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd not found in PATH: install it with: apt-get install -y etcd-server")
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatalf("kubectl not found in PATH: %v", err)
	}

	dir := t.TempDir()
	c := &Cluster{dir: dir, token: randomHex(t, 16)}

	// etcd, with its peer port on loopback too so that concurrent tests do
	// not fight over the default 2380.
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	peerURL := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	ep := start(t, dir, etcd,
		"--name=k8stest",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=k8stest="+peerURL,
	)
	waitReady(t, ep, etcdURL+"/health", &http.Transport{DisableKeepAlives: true})

	// kube-apiserver, with a bearer token for the admin, service account
	// keys and a self-signed serving certificate in certDir.
	certDir := filepath.Join(dir, "certs")
	tokens := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokens, c.token+",admin,admin,system:masters\n")
	saKey, saPub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	writeServiceAccountKeys(t, saKey, saPub)
	port := freePort(t)
	c.Server = "https://127.0.0.1:" + strconv.Itoa(port)
	ap := start(t, dir, apiserver,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+certDir,
		"--token-auth-file="+tokens,
		"--authorization-mode=AlwaysAllow",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+saPub,
		"--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
		// The loopback address cannot be an endpoint of the kubernetes
		// service, so do not try to publish it.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	)
	// The serving certificate file holds the certificate and the CA that
	// signed it, so it serves as the CA bundle. The API server writes it
	// before it listens.
	caFile := filepath.Join(certDir, "apiserver.crt")
	rt := &authTransport{token: c.token, caFile: caFile}
	waitReady(t, ap, c.Server+"/readyz", rt)

	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	writeFile(t, c.Kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: k8stest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: k8stest
  context:
    cluster: k8stest
    user: admin
current-context: k8stest
`, c.Server, caFile, c.token))
	return c
}

// apiServerBinary returns the kube-apiserver that build.sh made, or fails t
// with the command that makes it.
func apiServerBinary(t testing.TB) string {
	t.Helper()
	p := os.Getenv(apiServerEnv)
	if p == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("no cache directory for kube-apiserver: %v", err)
		}
		p = filepath.Join(cache, "otelcol-ebpf", "kube-apiserver")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("kube-apiserver not found at %s; build it once (about 20 min) with: make kube-apiserver (%s)",
			p, filepath.Join(repoRoot(t), "tools", "kube-apiserver", "build.sh"))
	}
	return p
}

// repoRoot returns the directory above the working directory that holds
// tools/kube-apiserver.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "tools", "kube-apiserver", "build.sh")); err == nil {
			return d
		}
		if d == filepath.Dir(d) {
			t.Fatalf("no tools/kube-apiserver above %s; set %s to a kube-apiserver binary", dir, apiServerEnv)
		}
	}
}

// proc is a server process whose output goes to a log file.
type proc struct {
	name string
	log  string
	done chan struct{}
}

// start runs bin in the background. Cleanup stops it: SIGTERM, then SIGKILL
// after 10 s.
func start(t testing.TB, dir, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(bin), done: make(chan struct{})}
	p.log = filepath.Join(dir, p.name+".log")
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Die with the test process even if cleanup never runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// logTail returns the end of p's output.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitReady polls url until it answers 200, and fails t if p exits first
// or the time runs out.
func waitReady(t testing.TB, p *proc, url string, rt http.RoundTripper) {
	t.Helper()
	client := &http.Client{Transport: rt, Timeout: 5 * time.Second}
	deadline := time.Now().Add(startTimeout)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready:\n%s", p.name, p.logTail())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s (%s):\n%s", p.name, startTimeout, last, p.logTail())
		}
	}
}

// authTransport sends the bearer token and trusts the API server's CA once
// the API server has written it.
type authTransport struct {
	token  string
	caFile string
}

func (a *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ca, err := os.ReadFile(a.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificates in %s", a.caFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+a.token)
	return tr.RoundTrip(req)
}

// writeServiceAccountKeys writes an ECDSA key pair that signs and checks
// service account tokens.
func writeServiceAccountKeys(t testing.TB, keyFile, pubFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	writeFile(t, pubFile, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
