package node

import (
	"context"
	"fmt"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// LogReadFailure starts the text StreamLog writes instead of a log it could not read, and
// LogCut the line it ends a log with when the stream broke before the container ended.
const (
	LogReadFailure = "test: reading the log of pod "
	LogCut         = "test: the log stream of pod "
)

// StreamLog copies a container's log to file until the container ends, as `kubectl logs -f`
// does: the API server reads it from the kubelet. Tests keep logs this way because the kubelet
// deletes a pod's log with the pod.
func StreamLog(ctx context.Context, cs kubernetes.Interface, namespace, pod, container, file string) {
	f, err := os.Create(file)
	if err != nil {
		return
	}
	defer f.Close()
	r, err := cs.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
	if err != nil {
		fmt.Fprintf(f, "%s%s/%s: %v\n", LogReadFailure, namespace, pod, err)
		return
	}
	defer r.Close()
	if _, err := io.Copy(f, r); err != nil && ctx.Err() == nil {
		fmt.Fprintf(f, "\n%s%s/%s broke: %v\n", LogCut, namespace, pod, err)
	}
}
