(() => {
  // The time of the first occurrence of each named step, in ms on a clock common to the
  // browser's pages (performance.timeOrigin + performance.now()).
  const marks = {};
  const clock = () => performance.timeOrigin + performance.now();
  // With window.__benchTrace set (before this script), each mark is also a User Timing mark, so
  // that a browser trace of the call can be read against the steps.
  const trace = Boolean(window.__benchTrace);
  const mark = (name, at = clock()) => {
    if (name in marks) return;
    marks[name] = at;
    if (trace) performance.mark("bench:" + name);
  };
  const counts = {};
  const count = (name) => {
    counts[name] = (counts[name] || 0) + 1;
  };
  window.__bench = { marks, counts, mark, clock };

  // The camera.
  const localTracks = new WeakSet();
  const getUserMedia = MediaDevices.prototype.getUserMedia;
  MediaDevices.prototype.getUserMedia = function (constraints) {
    mark("gum_call");
    return getUserMedia.call(this, constraints).then((stream) => {
      mark("gum_done");
      for (const track of stream.getTracks()) localTracks.add(track);
      return stream;
    });
  };

  // The peer connection: its calls, its events, its DTLS and ICE transports.
  const remoteTracks = new WeakSet();
  const watched = new WeakSet();
  const watchTransports = (pc) => {
    for (const part of [...pc.getSenders(), ...pc.getReceivers()]) {
      const dtls = part.transport;
      if (!dtls || watched.has(dtls)) continue;
      watched.add(dtls);
      dtls.addEventListener("statechange", () => mark("dtls_" + dtls.state));
      const ice = dtls.iceTransport;
      if (ice) ice.addEventListener("selectedcandidatepairchange", () => mark("ice_pair_selected"));
    }
    if (pc.sctp && !watched.has(pc.sctp)) {
      watched.add(pc.sctp);
      pc.sctp.addEventListener("statechange", () => mark("sctp_" + pc.sctp.state));
    }
  };
  const Native = window.RTCPeerConnection;
  class Instrumented extends Native {
    constructor(...args) {
      super(...args);
      mark("pc_created");
      this.addEventListener("negotiationneeded", () => mark("negotiationneeded"));
      this.addEventListener("icecandidate", ({ candidate }) => {
        if (candidate && candidate.candidate) mark("local_candidate");
      });
      this.addEventListener("icegatheringstatechange", () => mark("gathering_" + this.iceGatheringState));
      this.addEventListener("iceconnectionstatechange", () => mark("ice_" + this.iceConnectionState));
      this.addEventListener("connectionstatechange", () => mark("pc_" + this.connectionState));
      this.addEventListener("track", (event) => {
        remoteTracks.add(event.track);
        for (const stream of event.streams) for (const track of stream.getTracks()) remoteTracks.add(track);
        mark("track_" + event.track.kind);
      });
    }
    createDataChannel(...args) {
      mark("datachannel_created");
      const channel = super.createDataChannel(...args);
      channel.addEventListener("open", () => mark("datachannel_open"));
      return channel;
    }
    createOffer(...args) {
      mark("create_offer");
      return super.createOffer(...args);
    }
    createAnswer(...args) {
      mark("create_answer");
      return super.createAnswer(...args);
    }
    setLocalDescription(...args) {
      const type = args[0] && args[0].type;
      mark("sld_call" + (type ? "_" + type : ""));
      const done = super.setLocalDescription(...args);
      done.then(() => {
        if (this.localDescription) mark("sld_" + this.localDescription.type);
        watchTransports(this);
      }, () => undefined);
      return done;
    }
    setRemoteDescription(...args) {
      const type = args[0] && args[0].type;
      mark("srd_call_" + type);
      const done = super.setRemoteDescription(...args);
      done.then(() => {
        mark("srd_" + type);
        watchTransports(this);
      }, () => undefined);
      return done;
    }
    addIceCandidate(...args) {
      mark("remote_candidate");
      return super.addIceCandidate(...args);
    }
  }
  window.RTCPeerConnection = Instrumented;
  const setParameters = RTCRtpSender.prototype.setParameters;
  RTCRtpSender.prototype.setParameters = function (...args) {
    mark("set_parameters");
    count("set_parameters");
    return setParameters.apply(this, args);
  };

  // The signalling, read off the WebSocket frames: Engine.IO v4 message ("4") carrying a
  // Socket.IO v5 packet: "0" connect, "2" event, "3" acknowledgement, an optional "/nsp," and an
  // optional ack id before the JSON array. Named "out_<event>", "in_<event>", "ack_<event>";
  // a `signal` is named after what it carries (signal_offer, signal_answer, signal_candidate).
  const parse = (data) => {
    if (typeof data !== "string" || data[0] !== "4") return null;
    const type = data[1];
    let at = 2;
    if (data[at] === "/") at = data.indexOf(",", at) + 1;
    let end = at;
    while (end < data.length && data[end] >= "0" && data[end] <= "9") end += 1;
    let body = null;
    if (type === "2" || type === "3") {
      try {
        body = JSON.parse(data.slice(end));
      } catch {
        body = null;
      }
    }
    return { type, id: end > at ? data.slice(at, end) : null, body };
  };
  const describe = (event, payload) => {
    if (event !== "signal" || typeof payload !== "object" || payload === null) return event;
    if (payload.description) return "signal_" + payload.description.type;
    return payload.candidate ? "signal_candidate" : "signal";
  };
  const NativeSocket = window.WebSocket;
  class InstrumentedSocket extends NativeSocket {
    constructor(...args) {
      super(...args);
      const acks = new Map();
      this.__acks = acks;
      mark("ws_create");
      this.addEventListener("open", () => mark("ws_open"));
      this.addEventListener("message", ({ data }) => {
        const packet = parse(data);
        if (packet === null) return;
        if (packet.type === "0") mark("sio_connected");
        else if (packet.type === "2" && Array.isArray(packet.body)) mark("in_" + describe(packet.body[0], packet.body[1]));
        else if (packet.type === "3" && acks.has(packet.id)) mark("ack_" + acks.get(packet.id));
      });
    }
    send(data) {
      const packet = parse(data);
      if (packet !== null && packet.type === "2" && Array.isArray(packet.body)) {
        const name = describe(packet.body[0], packet.body[1]);
        mark("out_" + name);
        count("out_" + name);
        if (packet.id !== null) this.__acks.set(packet.id, name);
      }
      return super.send(data);
    }
  }
  window.WebSocket = InstrumentedSocket;

  // The first frame of a video: requestVideoFrameCallback on the element once it is given a
  // stream, "remote_frame" for one received over a peer connection, "local_frame" for the camera.
  // The callback's metadata also says when the remote frame's last packet arrived
  // (receiveTime) and when it went to the compositor (presentationTime).
  const srcObject = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, "srcObject");
  Object.defineProperty(HTMLMediaElement.prototype, "srcObject", {
    configurable: true,
    enumerable: srcObject.enumerable,
    get() {
      return srcObject.get.call(this);
    },
    set(stream) {
      srcObject.set.call(this, stream);
      if (!stream || !(this instanceof HTMLVideoElement)) return;
      const tracks = stream.getTracks();
      const which = tracks.some((t) => remoteTracks.has(t)) ? "remote" : tracks.some((t) => localTracks.has(t)) ? "local" : null;
      if (which === null) return;
      mark(which + "_src");
      const video = this;
      video.requestVideoFrameCallback((_now, meta) => {
        if (which === "remote" && !("remote_frame" in marks)) {
          if (meta.receiveTime) mark("remote_frame_received", performance.timeOrigin + meta.receiveTime);
          mark("remote_frame_presented", performance.timeOrigin + meta.presentationTime);
          window.__bench.frame = { width: meta.width, height: meta.height, decode_s: meta.processingDuration ?? null };
        }
        mark(which + "_frame");
      });
    },
  });
})();
