'use strict';
// CommonJS entry point: `const { Cache, Key, Policy } = require('karlton')`.
module.exports = require('./lib/karlton.cjs');
