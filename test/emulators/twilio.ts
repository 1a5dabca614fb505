export * from '../../src/sandbox/emulators/twilio';
