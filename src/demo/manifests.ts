/** The first demo's cluster: two nodes, an ambient namespace, a client and a server pod. */
export const DEMO_MANIFESTS = `
apiVersion: v1
kind: Namespace
metadata:
  name: demo
  labels:
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: demo
  labels: { app: client, version: v1 }
spec:
  nodeName: node-a
  serviceAccountName: client
---
apiVersion: v1
kind: Pod
metadata:
  name: server
  namespace: demo
  labels: { app: server, version: v1 }
spec:
  nodeName: node-b
  serviceAccountName: server
---
apiVersion: v1
kind: Service
metadata:
  name: server
  namespace: demo
spec:
  clusterIP: 10.96.0.10
  selector: { app: server }
  ports:
    - name: http
      port: 80
      targetPort: 8080
`;

/** A tiny HTTP server run inside the server pod: answers with who it is and what it got. */
export const DEMO_SERVER_JS = `
const http = require('node:http');
const [ip, port, name] = process.argv.slice(1);
http.createServer((req, res) => {
  const body = JSON.stringify({ server: name, path: req.url, from: req.socket.remoteAddress }) + '\\n';
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}).listen(Number(port), ip, () => console.log('listening'));
`;
