// Package harness runs the add-on end to end on real parts, as processes on this machine:
// kube-apiserver and etcd for the hub and for each managed cluster, OCM's hub and klusterlet
// controllers (test/ocm), the add-on manager binary, and the Argo CD agent principal and agents
// (argocd-agent v0.9.0). The e2e tests and `make demo` both drive it.
//
// Each managed cluster has its own API server: the agent's ClusterRole and ClusterRoleBinding
// are cluster-scoped with fixed names, so two clusters' agents cannot share one. No kubelet
// runs anywhere; PlayKubelet stands in for it for the agent Deployment only.
package harness
