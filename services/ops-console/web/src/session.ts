import { createContext, useContext } from "react";
import type { Role, User } from "./api";

export interface SessionState {
  user: User;
  has: (...roles: Role[]) => boolean;
}

export const SessionContext = createContext<SessionState | null>(null);

export function useSession(): SessionState {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside a signed-in page");
  return session;
}

export function sessionOf(user: User): SessionState {
  return { user, has: (...roles) => roles.some((role) => user.roles.includes(role)) };
}
