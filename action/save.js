'use strict';
require('./kura.js').run('save');
