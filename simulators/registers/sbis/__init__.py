"""A fake SBIS (Saby) cloud: auth, OFD listings, misbehaviour, and a scripted shop week."""
