/**
 * Whether another member is still there, as a pure decision (like state.ts's reducer): given what
 * happened and what is known of the member, what becomes of it. members.ts acts on the verdict.
 */

/**
 * How long a `ping` waits for its `pong`. After a `peer_left` "disconnected" this decides whether a
 * closed or crashed tab leaves the view (well within 2 s); after re-entering, whether a connection
 * is kept (generous: a slow answer would cost a whole new connection).
 */
export const PROBE_LEFT_MS = 1000;
export const PROBE_REENTER_MS = 2500;
/**
 * How long a member that vanished without a word (no answer, its connection still up) is kept out
 * of view before its connection is closed: a crashed tab never comes back, but a page whose
 * network changed closes its sockets just as abruptly, and enters again within seconds; its
 * connection then recovers by an ICE restart instead of starting over.
 */
export const LINGER_MS = 30000;

/** What is known of a member when a decision is due. */
export interface MemberFacts {
  /** In the room as the signaller last said (false after `peer_left` "disconnected"). */
  present: boolean;
  /** Its data channel was closed by the other page. */
  channelClosed: boolean;
  connection: RTCPeerConnectionState;
}

export type LivenessEvent =
  /** The signaller says it left: it hung up ("left"), or its signalling dropped. */
  | { type: "peer_left"; reason: "left" | "disconnected" }
  /** The answer to our `ping` on its data channel came in time, or not. */
  | { type: "probed"; answered: boolean }
  /** ICE restarts did not bring its connection back. */
  | { type: "gave_up" }
  /** The other page closed the data channel. */
  | { type: "channel_closed" }
  /** It stayed out of view for `LINGER_MS`. */
  | { type: "linger_over" };

/**
 * - `keep`: nothing to do.
 * - `probe`: ask it over the data channel (`ping`), then decide on the answer (`probed`).
 * - `recover`: kept; its connection restarts ICE if it is down.
 * - `hide`: out of view; its connection lingers for `LINGER_MS` in case it comes back.
 * - `replace`: a new connection, which this page offers as the newcomer.
 * - `remove`: it is gone; close its connection.
 */
export type LivenessAction = "keep" | "probe" | "recover" | "hide" | "replace" | "remove";

export interface Verdict {
  action: LivenessAction;
  /** Why, for the console. */
  reason: string;
}

/**
 * What becomes of a member after `event`. For `probed`:
 *
 * - It answers: kept (its connection restarts ICE if it is down).
 * - After `peer_left` "disconnected", its channel closed: its page closed the connection (the
 *   tab closed). It goes.
 * - After `peer_left` "disconnected", no answer while its connection is still up: a tab that
 *   crashed, or a page whose network just changed (browsers close their sockets at once on
 *   that too). It leaves the view, and its connection lingers in case it comes back.
 * - After this page entered again, no answer and its channel closed: the other page closed its
 *   connection (it gave us up while we were away). A new one.
 * - Otherwise the network between the two is down, and the page may well be there: kept, and
 *   ICE restarts until the connection is back; if it never is, `gave_up` decides.
 */
export function judge(event: LivenessEvent, facts: MemberFacts): Verdict {
  switch (event.type) {
    case "peer_left":
      if (event.reason === "left") return { action: "remove", reason: "gone: hung up" };
      // Its signalling dropped: a closed or crashed tab does not answer, a page reconnecting does.
      return { action: "probe", reason: "its signalling dropped" };
    case "probed":
      if (event.answered) return { action: "recover", reason: "answers" };
      if (!facts.present && facts.channelClosed) return { action: "remove", reason: "gone: its channel closed" };
      if (!facts.present && facts.connection === "connected") {
        return { action: "hide", reason: "out of view: no answer, connection up" };
      }
      if (facts.present && facts.channelClosed) return { action: "replace", reason: "new connection: its channel closed" };
      return { action: "recover", reason: "no answer: restarting ICE" };
    case "gave_up":
      return facts.present
        ? { action: "replace", reason: "new connection: ICE restarts gave up" }
        : { action: "remove", reason: "gone: ICE restarts gave up" };
    case "channel_closed":
      // While present, its new connection's offer will follow.
      return facts.present
        ? { action: "keep", reason: "channel closed while present: a new offer follows" }
        : { action: "remove", reason: "gone: closed its connection while away" };
    case "linger_over":
      return facts.present
        ? { action: "keep", reason: "back in the room" }
        : { action: "remove", reason: "gone: did not come back" };
  }
}
