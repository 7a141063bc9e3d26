"""The team server (`loopml server`): one LoopML for a whole team over HTTP, with accounts and roles."""
