// The service bench:density boots by the hundred: a little state, one handler.
export default { version: "1.0.0", init: () => ({ n: 0 }), handlers: { incr: (s: { n: number }) => ++s.n } };
