/** What the view reads of the Call, and hears from it by topic. */
import type { CallTopic, RemotePeer } from "../call";
import type { ChatEntry } from "../types";

/**
 * The Call as the view sees it (the Call is one; the view's tests give a fake). Each part of the
 * view subscribes to the topics of what it shows, so the once-a-second "stats" reaches only the
 * quality marks of the tiles.
 */
export interface CallSource {
  readonly localStream: MediaStream | null;
  readonly sharingScreen: boolean;
  /** Whether this page's own microphone is speaking now (never while muted). */
  readonly selfSpeaking?: boolean;
  readonly remotePeers: RemotePeer[];
  readonly messages: readonly ChatEntry[];
  readonly canChat: boolean;
  /** The page has waited a while on its kernel, busy with a cell (the status line says so). */
  readonly waitingForKernel?: boolean;
  sendChat(text: string): boolean;
  subscribe(topic: CallTopic, listener: () => void): () => void;
}
