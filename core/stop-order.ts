// The order a runtime's services stop in, from their bindings.

/** What the order is computed from: a service's name and where its bindings lead. */
export interface Stoppable {
  readonly name: string;
  readonly spec: { readonly bindings: Readonly<Record<string, string>> };
}

/**
 * The order services stop in: every service after all the services that
 * hold a binding to it, so a caller's last queued messages can still reach
 * their callees; the log service last, so everyone's final output reaches
 * it. Services in a binding cycle keep their config order.
 */
export function stopOrder<S extends Stoppable>(slots: S[], logService: string | undefined): S[] {
  const callers = new Map<string, Set<string>>(slots.map((s) => [s.name, new Set<string>()]));
  for (const slot of slots) for (const target of Object.values(slot.spec.bindings)) if (target !== slot.name) callers.get(target)?.add(slot.name);
  for (const slot of slots) if (logService !== undefined && slot.name !== logService) callers.get(logService)?.add(slot.name);
  const order: S[] = [];
  const done = new Set<string>();
  while (order.length < slots.length) {
    const ready = slots.find((s) => !done.has(s.name) && [...(callers.get(s.name) ?? [])].every((c) => done.has(c)));
    const next = ready ?? slots.find((s) => !done.has(s.name) && s.name !== logService) ?? slots.find((s) => !done.has(s.name));
    if (next === undefined) break;
    order.push(next);
    done.add(next.name);
  }
  return order;
}
