// The callee of bench:calls: answers at once.
export default { version: "1.0.0", handlers: { echo: (_s: unknown, x: unknown) => x } };
