"""The domain rules, one room each, called by the services and never copied
into them: who a subject is (age, minors, guardians' relationships), what
consent allows, when a face confirmation is locked out, which threshold
decides."""
