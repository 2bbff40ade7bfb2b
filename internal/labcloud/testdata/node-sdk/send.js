// One device-to-cloud message through the Azure IoT device SDK for Node
// (HTTP transport), from a connection string: the SDK's own TLS and SAS.
// Usage: node send.js "HostName=...;DeviceId=...;SharedAccessKey=..."
// (trust the lab CA with NODE_EXTRA_CA_CERTS). Prints "sent" or the error.
'use strict';
const { Client, Message } = require('azure-iot-device');
const { Http } = require('azure-iot-device-http');

const client = Client.fromConnectionString(process.argv[2], Http);
client.sendEvent(new Message(JSON.stringify({ from: 'azure-iot-device' })), (err) => {
  if (err) {
    console.log('error: ' + (err.message || err) + (err.code ? ' (' + err.code + ')' : ''));
    process.exit(1);
  }
  console.log('sent');
  process.exit(0);
});
