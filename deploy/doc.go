// Package deploy holds no code: its tests check what deploy/ ships. The
// Kubernetes manifests and Helm values decode strictly into the Kubernetes
// API types and keep the agent's least privilege; the collector configs pass
// the distribution's validate; the Dockerfile pins the Makefile's versions;
// and every dashboard query returns data from a real Prometheus scraping the
// distribution under real traffic.
package deploy
