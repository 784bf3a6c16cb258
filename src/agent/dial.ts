/**
 * Plain TCP dials from inside a pod's netns, with the agent's mark (so the
 * capture rules never take the agent's own traffic) and a connect deadline.
 * With `spoofSource`, the connection carries the original client's address
 * (IP_TRANSPARENT); replies find their way back through the 0x111 connmark
 * and table 100, which only exist where capture rules are installed.
 */
import { isIPv4, type Socket } from 'node:net';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../hbone/settings.js';
import type { NativeBinding, NetnsRef } from '../native/binding.js';
import { connectFromNetns } from '../native/sockets.js';
import { armAppSocket } from './relay.js';

export interface PodDial {
  netns: NetnsRef;
  host: string;
  port: number;
  mark: number;
  /** Original client address to keep as the source (IPv4 only for now). */
  spoofSource?: string;
}

/** Starts the dial; the socket is connecting (allowHalfOpen). */
export function startPodDial(native: NativeBinding, o: PodDial): Socket {
  const transparent = o.spoofSource !== undefined && isIPv4(o.spoofSource) && isIPv4(o.host);
  const sock = connectFromNetns(native, {
    netns: o.netns,
    host: o.host,
    port: o.port,
    mark: o.mark,
    allowHalfOpen: true,
    ...(transparent ? { transparent: true, bindAddress: o.spoofSource } : {}),
  }).setNoDelay(true);
  // A dial to an app: an agent crash must reset it, not end it (relay.ts).
  armAppSocket(native, sock);
  return sock;
}

/** Dials and resolves once connected; rejects on error or after the connect deadline. */
export function dialPod(native: NativeBinding, o: PodDial, timeoutMs = DEFAULT_CONNECT_TIMEOUT_MS): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = startPodDial(native, o);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${o.host}:${o.port} timed out after ${timeoutMs}ms`));
    }, timeoutMs);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    s.once('error', onError);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
  });
}
